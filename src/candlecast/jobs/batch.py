"""The batch job: forecasts for every active instrument, written ahead of time as one slot per
(symbol, timeframe, model, as_of).

The slot time
    ``as_of`` is the run's as-of time truncated to the timeframe grid (the hour for 1h, 00:00 UTC for 1d).
    Candles close on that grid, so truncation loses nothing: a run at 12:55 and one at 12:05 both see the
    candles closed by 12:00 and write the same slot. Re-running a slot replaces its rows, never duplicates.

Per run
    1. read the last ``jobs.context_<tf>`` candles of each instrument that had closed by the slot time;
    2. build the event tensor when the model uses events and the events package is present (otherwise none
       is sent, and ``event_context`` says why);
    3. send the series, ``jobs.request_series_per_call`` per request and ``jobs.concurrency`` requests at a
       time, to the inference service (``InferenceClient``: timeouts, retries with backoff on connection
       errors and 502/503/504), or to the model in-process with ``local=True``;
    4. write each symbol's forecast in its own transaction, so one failure never stops or undoes another.

Nothing is ever deleted: when the service is unreachable the previous forecasts stay and the gateway keeps
serving them. Every run leaves a ``job_runs`` row (ok / failed / skipped counts, per-symbol errors,
duration); its status is 'ok', 'partial' (some symbols failed) or 'failed' (none succeeded).

Seeds are derived from (model, timeframe, slot, the symbols of the request), so re-running a slot with the
same symbols reproduces it exactly, over HTTP or in-process alike.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.engine import Engine

from candlecast.config import Settings
from candlecast.errors import InferenceRequestError, InputError, NotFoundError
from candlecast.inference.transports import ForecastTransport, open_transport
from candlecast.jobs.calibrate import calibrate_predictions
from candlecast.jobs.records import recorded_run
from candlecast.models.base import OHLCV_COLUMNS, Forecast, SeriesInput
from candlecast.models.calendars import next_timestamps
from candlecast.store.candles import get_instruments, latest_candles_many, timeframe_delta
from candlecast.store.predictions import Prediction, previous_slots, upsert_prediction

__all__ = ["BatchResult", "run_batch", "slot_time"]

log = logging.getLogger(__name__)


def slot_time(as_of: datetime | None, timeframe: str) -> datetime:
    """The slot of an as-of time (default now): truncated to the hour (1h) or to 00:00 UTC (1d)."""
    step = timeframe_delta(timeframe)
    as_of = datetime.now(UTC) if as_of is None else as_of
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    ts = pd.Timestamp(as_of).tz_convert("UTC")
    return ts.floor("h" if step == timedelta(hours=1) else "D").to_pydatetime()


@dataclass(frozen=True)
class BatchResult:
    job_name: str
    timeframe: str
    model: str
    as_of: datetime  # the slot
    ok: tuple[str, ...]
    failed: dict[str, str]  # symbol -> error
    skipped: dict[str, str]  # symbol -> why it was not forecast (no or stale candles)
    duration_s: float
    run_id: int
    status: str

    @property
    def exit_code(self) -> int:
        """Non-zero only when nothing succeeded."""
        return 0 if self.ok else 1


# -- the job ---------------------------------------------------------------------------------------


@dataclass
class _Symbol:
    symbol: str
    calendar: str
    asset_class: str
    series: SeriesInput | None = None
    event_context: dict[str, Any] = field(default_factory=dict)


def run_batch(
    settings: Settings,
    engine: Engine,
    timeframe: str,
    model: str,
    as_of: datetime | None = None,
    symbols: Sequence[str] | None = None,
    local: bool = False,
    progress: bool = True,
    *,
    job_name: str | None = None,
    run_id: int | None = None,
    transport: ForecastTransport | None = None,
    on_symbol: Callable[[str, str | None], None] | None = None,
    record: bool = True,
) -> BatchResult:
    """Forecast every active instrument (or ``symbols``) as of the slot of ``as_of`` (default now).

    ``transport`` reuses an open transport (a replay loads its model once); otherwise one is opened for the run
    (``local`` picks in-process over HTTP). ``on_symbol(symbol, error_or_None)`` is called as each symbol
    is written or fails. ``job_name`` defaults to ``batch-<model>-<timeframe>``; ``run_id`` continues a
    ``job_runs`` row a scheduler already claimed.
    """
    slot = slot_time(as_of, timeframe)
    job_name = job_name or f"batch-{model}-{timeframe}"
    ok: list[str] = []
    failed: dict[str, str] = {}
    skipped: dict[str, str] = {}
    with recorded_run(engine, job_name, as_of=slot, run_id=run_id, record=record) as run:
        own_transport = transport is None
        try:
            if transport is None:
                transport = open_transport(settings, model, local)
            todo = _read_inputs(settings, engine, timeframe, model, slot, symbols, transport, skipped)
            with _progress_bar(progress, f"{model} {timeframe} {slot:%Y-%m-%d %H:%M}", len(todo)) as advance:

                def done(symbol: str, error: str | None) -> None:
                    (failed.__setitem__(symbol, error) if error else ok.append(symbol))
                    advance()
                    if on_symbol is not None:
                        on_symbol(symbol, error)

                _forecast_and_write(settings, engine, timeframe, model, slot, todo, transport, done)
        finally:
            if own_transport and transport is not None:
                transport.close()
        run.status = "ok" if not failed and ok else ("partial" if ok else "failed")
        run.errors = dict(failed)
        run.counts.update(ok=len(ok), failed=len(failed), skipped=len(skipped), skipped_symbols=skipped)
        if not ok:
            run.error = "no forecast was written" + (f"; {len(failed)} symbols failed" if failed else "")
    log.log(
        logging.INFO if record else logging.DEBUG,  # a replay logs its own summary, not one line per slot
        "%s slot %s: %d written, %d failed, %d skipped in %.1f s",
        job_name, slot.isoformat(), len(ok), len(failed), len(skipped), run.duration_s,
    )  # fmt: skip
    return BatchResult(
        job_name, timeframe, model, slot, tuple(sorted(ok)), failed, skipped, run.duration_s, run.id, run.status
    )


def _read_inputs(
    settings: Settings,
    engine: Engine,
    timeframe: str,
    model: str,
    slot: datetime,
    symbols: Sequence[str] | None,
    transport: ForecastTransport,
    skipped: dict[str, str],
) -> list[_Symbol]:
    """Each instrument's context as of the slot; instruments without usable candles go to ``skipped``."""
    instruments = {i.symbol: i for i in get_instruments(engine, symbols, active_only=symbols is None)}
    wanted = sorted(instruments) if symbols is None else list(dict.fromkeys(symbols))
    unknown = [s for s in wanted if s not in instruments]
    if unknown:
        raise NotFoundError("symbols", f"unknown instrument(s) {unknown}", available=sorted(instruments))
    cfg = settings.jobs
    context = cfg.context_1h if timeframe == "1h" else cfg.context_1d
    # the job's minimum for the timeframe, or the model's own when it needs more (e.g. GARCH's fit window)
    min_context = max(cfg.min_context_for(timeframe), transport.capabilities().min_context)
    frames = latest_candles_many(engine, wanted, timeframe, context, slot)
    previous = previous_slots(engine, model, timeframe, slot, wanted) if cfg.skip_unchanged else {}
    todo: list[_Symbol] = []
    for symbol in wanted:
        calendar = settings.market_calendars.get(instruments[symbol].asset_class, "24/7")
        frame = frames.get(symbol)
        if frame is None or len(frame) < min_context:
            found = 0 if frame is None else len(frame)
            skipped[symbol] = f"{found} candles closed by {slot.isoformat()} (need {min_context})"
            continue
        last_close_time = frame["ts"].iloc[-1].to_pydatetime() + timeframe_delta(timeframe)
        if (stale := _missing_candle(frame["ts"].iloc[-1], timeframe, calendar, slot)) is not None:
            skipped[symbol] = stale
            continue
        if symbol in previous and previous[symbol] >= last_close_time:
            skipped[symbol] = f"no new candle since the forecast of {previous[symbol].isoformat()} (market closed)"
            continue
        asset_class = instruments[symbol].asset_class
        item = _Symbol(symbol, calendar, asset_class)
        try:
            item.series = SeriesInput(
                timestamps=pd.DatetimeIndex(frame["ts"]),
                ohlcv=frame[list(OHLCV_COLUMNS)].to_numpy(dtype=np.float64),
                symbol=symbol,
                timeframe=timeframe,
                calendar=calendar,
                asset_class=asset_class,
            )
        except InputError as exc:
            skipped[symbol] = f"unusable candles: {exc}"
            continue
        todo.append(item)
    _attach_events(settings, engine, timeframe, slot, todo, transport)
    return todo


def _missing_candle(last: pd.Timestamp, timeframe: str, calendar: str, slot: datetime) -> str | None:
    """Why the input is stale, or None: the candle after the newest one had closed by the slot, by the
    instrument's trading calendar, yet is not stored (its data stopped or is late).

    A stale input is never forecast from: its targets would start before the slot. With a fresh one the
    first target is the candle open at the slot (or the next session's first), whatever the timeframe.
    """
    expected = next_timestamps(last, timeframe, 1, calendar)
    if expected[0] + timeframe_delta(timeframe) > slot:
        return None
    return (
        f"stale: the {timeframe} candle of {expected[0].isoformat()} ({calendar} calendar) closed by the slot "
        f"{slot.isoformat()} but is not stored; newest candle {last.isoformat()} "
        "(for historical data, pass --as-of inside its range)"
    )


def _attach_events(
    settings: Settings,
    engine: Engine,
    timeframe: str,
    slot: datetime,
    todo: list[_Symbol],
    transport: ForecastTransport,
) -> None:
    """Event tensors for models that use them; ``event_context`` records what was sent and why."""
    if not settings.jobs.send_events or not transport.capabilities().uses_events:
        for item in todo:
            item.event_context = {"events": False, "reason": f"model {transport.name} does not use events"}
        return
    try:
        from candlecast.jobs.events import EventInputs
    except ImportError as exc:  # the events package is optional
        for item in todo:
            item.event_context = {"events": False, "reason": f"event encoder not available ({exc})"}
        return
    try:
        inputs = EventInputs.read(settings, engine, timeframe, slot, [i.series for i in todo if i.series is not None])
    except Exception as exc:  # events are an input like any other: without them the forecasts still run
        log.warning("event inputs unavailable for %s %s: %s", timeframe, slot.isoformat(), exc)
        for item in todo:
            item.event_context = {"events": False, "reason": f"event inputs unavailable: {exc}"}
        return
    cfg = settings.jobs
    pred_len = cfg.pred_len_1h if timeframe == "1h" else cfg.pred_len_1d
    for item in todo:
        assert item.series is not None
        try:
            tensor, known_ahead = inputs.encode(item.series, horizon=pred_len)
        except Exception as exc:  # one instrument's events failing never stops its forecast
            item.event_context = {"events": False, "reason": f"event encoding failed: {exc}"}
            continue
        item.series = SeriesInput(
            timestamps=item.series.timestamps,
            ohlcv=item.series.ohlcv,
            symbol=item.symbol,
            timeframe=timeframe,
            calendar=item.calendar,
            asset_class=item.asset_class,
            events=tensor,
            future_events=known_ahead,
        )
        active = np.flatnonzero(np.abs(tensor).sum(axis=0) > 0).tolist()
        ahead = np.flatnonzero(np.abs(known_ahead).sum(axis=0) > 0).tolist()
        item.event_context = {
            "events": True, "channels": tensor.shape[1], "active_channels": active, "horizon_channels": ahead,
        }  # fmt: skip


def _forecast_and_write(
    settings: Settings,
    engine: Engine,
    timeframe: str,
    model: str,
    slot: datetime,
    todo: list[_Symbol],
    transport: ForecastTransport,
    done: Callable[[str, str | None], None],
) -> None:
    """Requests run on ``jobs.concurrency`` threads; their results are written here, one symbol per commit."""
    cfg = settings.jobs
    pred_len = cfg.pred_len_1h if timeframe == "1h" else cfg.pred_len_1d
    size = max(1, cfg.request_series_per_call)
    groups = [todo[i : i + size] for i in range(0, len(todo), size)]
    with ThreadPoolExecutor(max_workers=max(1, cfg.concurrency), thread_name_prefix="batch") as pool:
        futures = {
            pool.submit(_request_group, transport, group, pred_len, cfg.sample_count, model, timeframe, slot): group
            for group in groups
        }
        for future in as_completed(futures):
            answered: list[tuple[_Symbol, Prediction]] = []
            for item, outcome in zip(futures[future], future.result(), strict=True):
                if isinstance(outcome, str):
                    done(item.symbol, outcome)
                elif outcome.target_timestamps[0] < slot:  # never store a forecast of the past
                    done(item.symbol, f"first target {outcome.target_timestamps[0].isoformat()} is before the slot")
                else:
                    answered.append((item, _prediction(item, outcome, timeframe, model, slot)))
            # the band each forecast serves (jobs.calibrate), from what was known at the slot
            served = calibrate_predictions(settings, engine, [p for _, p in answered])
            for (item, _), prediction in zip(answered, served, strict=True):
                try:
                    with engine.begin() as conn:
                        upsert_prediction(conn, prediction)
                except Exception as exc:
                    done(item.symbol, f"write failed: {type(exc).__name__}: {exc}")
                else:
                    done(item.symbol, None)


def _request_group(
    transport: ForecastTransport,
    group: list[_Symbol],
    pred_len: int,
    sample_count: int,
    model: str,
    timeframe: str,
    slot: datetime,
) -> list[Forecast | str]:
    """One request for the group: a forecast or an error message per symbol.

    A request refused as invalid (4xx) is retried one series at a time so one bad series fails alone.
    """
    series = [item.series for item in group if item.series is not None]
    seeds = [_seed(model, timeframe, slot, item.symbol) for item in group if item.series is not None]
    try:
        return list(transport.forecast(series, pred_len, sample_count, seeds))
    except Exception as exc:
        if len(group) > 1 and _is_bad_request(exc):
            out: list[Forecast | str] = []
            for item in group:
                out.extend(_request_group(transport, [item], pred_len, sample_count, model, timeframe, slot))
            return out
        return [f"{type(exc).__name__}: {exc}"] * len(group)


def _is_bad_request(exc: Exception) -> bool:
    """The request itself was refused (bad input), so splitting it can isolate the bad series."""
    return isinstance(exc, InputError | InferenceRequestError) and getattr(exc, "status", None) != 429


def _seed(model: str, timeframe: str, slot: datetime, symbol: str) -> int:
    """The seed of one (model, timeframe, slot, symbol): a re-run draws the same paths, however grouped."""
    key = "|".join([model, timeframe, slot.isoformat(), symbol]).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") >> 1


def _prediction(item: _Symbol, f: Forecast, timeframe: str, model: str, slot: datetime) -> Prediction:
    assert item.series is not None
    context = {
        **item.event_context,
        "context_candles": len(item.series),
        "last_candle": item.series.timestamps[-1].isoformat(),
        "seed": f.seed,
    }
    return Prediction(
        symbol=item.symbol,
        timeframe=timeframe,
        model_name=model,
        model_version=f.model_version,
        as_of=slot,
        target_ts=list(f.target_timestamps.to_pydatetime()),
        p10=f.p10,
        p50=f.p50,
        p90=f.p90,
        last_close=f.last_close,
        samples=f.samples if f.samples.size else None,
        event_context=context,
    )


class _progress_bar:  # noqa: N801 - used like a function: ``with _progress_bar(...) as advance``
    """A Rich progress bar over symbols (or nothing when ``enabled`` is False); yields ``advance()``."""

    def __init__(self, enabled: bool, label: str, total: int) -> None:
        self.progress = (
            Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            if enabled
            else None
        )
        self.label, self.total = label, total

    def __enter__(self) -> Callable[[], None]:
        if self.progress is None:
            return lambda: None
        self.progress.start()
        task = self.progress.add_task(self.label, total=self.total)
        progress = self.progress
        return lambda: progress.advance(task)

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()
