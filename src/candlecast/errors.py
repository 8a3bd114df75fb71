"""The one exception tree of candlecast; every package raises these (or subclasses of them).

::

    CandlecastError                   base of everything candlecast raises on purpose
    ├── InputError                    bad input; ``field`` names it (HTTP 422, CLI exit 2)
    │   ├── NotFoundError             a symbol, model or forecast that does not exist (HTTP 404)
    │   └── NotEnoughDataError        too few candles or windows for what was asked
    ├── UnavailableError              something needed is not there right now (HTTP 503)
    │   ├── ModelUnavailableError     a configured model did not load; ``reason`` says why
    │   ├── WeightsNotAvailableError  checkpoint files neither local nor downloadable
    │   ├── DatabaseUnavailable       the database cannot be reached
    │   ├── ServiceUnreachable        the inference service cannot be reached
    │   └── OverloadedError           a queue is full; retry later (HTTP 503)
    ├── StoreError                    the database refused a statement (HTTP 500)
    ├── AccessDenied                  no or a wrong API key, or over a rate limit (``status`` 401/403/429)
    └── UpstreamError                 a service we called answered with an error; ``status`` is its HTTP status
        └── InferenceError            ... that service is the inference service
            ├── InferenceRequestError       it answered 4xx: our request was wrong
            ├── InferenceModelUnavailable   it answered 503 model_unavailable
            └── InferenceServerError        5xx after retries, or no answer at all (``status`` None)

Exceptions that callers used to catch as built-ins keep those bases (an ``InputError`` is a
``ValueError``, a ``NotFoundError`` a ``LookupError``, ``WeightsNotAvailableError`` a
``FileNotFoundError``). HTTP layers map the tree to status codes with ``http_status`` alone.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AccessDenied",
    "CandlecastError",
    "DatabaseUnavailable",
    "InferenceError",
    "InferenceModelUnavailable",
    "InferenceRequestError",
    "InferenceServerError",
    "InputError",
    "ModelUnavailableError",
    "NotEnoughDataError",
    "NotFoundError",
    "OverloadedError",
    "ServiceUnreachable",
    "StoreError",
    "UnavailableError",
    "UpstreamError",
    "WeightsNotAvailableError",
    "http_status",
]


class CandlecastError(Exception):
    """Base of every error candlecast raises on purpose."""


class InputError(CandlecastError, ValueError):
    """Bad input, with the name of the offending field (``field``) for error messages and HTTP 422s."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


class NotFoundError(InputError, LookupError):
    """The named thing does not exist; ``available`` lists what does, when that is known."""

    def __init__(self, field: str, message: str, available: list[Any] | None = None) -> None:
        super().__init__(field, message)
        self.available = available

    def __str__(self) -> str:  # LookupError (KeyError-like) would otherwise quote the message
        return self.args[0] if self.args else ""


class NotEnoughDataError(InputError):
    """Too few candles (or windows) for the work asked; the message says what was found."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(field, message)


class UnavailableError(CandlecastError):
    """Something needed is not there right now (a model, weights, the database, a service)."""


class ModelUnavailableError(UnavailableError):
    """A configured model that could not be loaded; ``reason`` says why."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"model {name!r} is unavailable: {reason}")
        self.name = name
        self.reason = reason


class WeightsNotAvailableError(UnavailableError, FileNotFoundError):
    """Checkpoint files are neither in a local folder nor obtainable from the Hugging Face hub."""


class DatabaseUnavailable(UnavailableError):
    """The database cannot be reached."""


class ServiceUnreachable(UnavailableError):
    """A service (the inference service) could not be reached, after the client's retries."""


class OverloadedError(UnavailableError):
    """More work is queued than accepted; retry later."""


class StoreError(CandlecastError):
    """The database refused a statement (a constraint, a missing row it depends on)."""


class AccessDenied(CandlecastError):
    """A request refused before any work: missing or invalid API key (401/403) or rate-limited (429).

    ``headers`` are sent with the answer (``WWW-Authenticate``, ``Retry-After``).
    """

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


class UpstreamError(CandlecastError):
    """A service we called answered with an error; ``status`` is its HTTP status (None: no answer)."""

    def __init__(self, message: str, status: int | None = None, detail: str = "", errors: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail
        self.errors = errors or []


class InferenceError(UpstreamError):
    """The inference service answered with an error, or did not answer."""


class InferenceRequestError(InferenceError):
    """4xx: the request is wrong (``status``, ``detail``, ``errors``); retrying cannot help."""


class InferenceModelUnavailable(InferenceError):
    """503 model_unavailable: the model did not load (``detail`` says why)."""


class InferenceServerError(InferenceError):
    """5xx after the retries, or the service unreachable (``status`` None)."""


# Most specific first: the first class an error is an instance of gives its status.
_HTTP_STATUS: tuple[tuple[type[CandlecastError], int], ...] = (
    (NotFoundError, 404),
    (InputError, 422),
    (UnavailableError, 503),
    (InferenceRequestError, 502),
    (UpstreamError, 502),
    (StoreError, 500),
    (CandlecastError, 500),
)


def http_status(exc: CandlecastError) -> int:
    """The HTTP status an error is answered with, the same in every HTTP layer."""
    if isinstance(exc, AccessDenied):
        return exc.status
    for cls, status in _HTTP_STATUS:
        if isinstance(exc, cls):
            return status
    return 500
