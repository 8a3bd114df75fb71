"""PostgreSQL binary COPY streams written with numpy, for the store's bulk writes.

A binary COPY row is: a field count (int16), then per field its byte length (int32; -1 = NULL) and
its bytes, big-endian. Rows are fixed-width when every text value has the same length and the same
fields are NULL, so rows are encoded in groups sharing those (order does not matter to COPY): each
group is one numpy structured array, written with ``tobytes()``. No Python loop runs per row.

Column kinds: ``">f8"`` (NaN is written as NULL: the store never holds NaN), ``">i8"``, ``">i4"``,
``"?"`` (boolean), ``"timestamptz"`` (pandas/numpy datetimes) and ``"text"`` (a numpy bytes array, or
bytes/str values).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

__all__ = ["COPY_SIGNATURE", "binary_copy", "copy_row_dtype", "decode_binary_copy", "pg_datetime", "pg_microseconds"]

COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in Unix microseconds
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def pg_microseconds(values: pd.Series | pd.DatetimeIndex | np.ndarray | Sequence[object]) -> np.ndarray:
    """Timestamps as PostgreSQL's binary timestamptz: int64 microseconds since 2000-01-01 UTC."""
    index = pd.DatetimeIndex(values)  # type: ignore[arg-type]  # any sequence of timestamps; pandas checks
    if index.tz is None:
        raise ValueError("timestamps must be timezone-aware")
    return index.tz_convert("UTC").as_unit("us").asi8 - _PG_EPOCH_US  # type: ignore[attr-defined]  # asi8 is missing from pandas-stubs


def pg_datetime(raw: int) -> datetime:
    """A binary timestamptz (int64 microseconds since 2000-01-01 UTC) as a timezone-aware datetime."""
    return _PG_EPOCH + timedelta(microseconds=raw)


def binary_copy(columns: Sequence[tuple[str, str, np.ndarray | pd.Series | Sequence[object]]]) -> bytes:
    """The binary COPY stream of rows given column-wise as ``(name, kind, values)`` of equal length."""
    if not columns:
        raise ValueError("no columns")
    n = len(columns[0][2])
    prepared: list[tuple[str, str, np.ndarray, np.ndarray]] = []  # name, dtype, values, byte length per row
    for name, kind, raw in columns:
        if len(raw) != n:
            raise ValueError(f"column {name!r} has {len(raw)} values, expected {n}")
        if kind == "text":
            if isinstance(raw, np.ndarray) and raw.dtype.kind == "S":
                values = raw
            else:
                values = np.array([v if isinstance(v, bytes) else str(v).encode() for v in raw], dtype=bytes)
            lengths = np.char.str_len(values).astype(np.int64)
            prepared.append((name, "text", values, lengths))
            continue
        values = pg_microseconds(raw) if kind == "timestamptz" else np.asarray(raw)
        dtype = ">i8" if kind == "timestamptz" else kind
        width = np.dtype(dtype).itemsize
        lengths = np.where(np.isnan(values), -1, width) if dtype == ">f8" else np.full(n, width)
        prepared.append((name, dtype, values, lengths))

    # Rows sharing every field length (text widths, NULLs) have one fixed-width layout: one int64 key
    # per row packs them (16 bits per text length, 1 bit per nullable number).
    key, bits = np.zeros(n, dtype=np.int64), 0
    for _, dtype, _, lengths in prepared:
        if dtype == "text":
            key, bits = key | (lengths << bits), bits + 16
        elif dtype == ">f8":
            key, bits = key | ((lengths < 0).astype(np.int64) << bits), bits + 1
    if bits > 63:
        raise ValueError("too many text or nullable columns for one stream")
    if n and key.min() != key.max():
        keys, group = np.unique(key, return_inverse=True)
    else:
        keys, group = key[:1], np.zeros(n, dtype=np.int64)
    parts = [COPY_SIGNATURE + struct.pack(">ii", 0, 0)]
    for g in range(len(keys)):
        member = group == g if len(keys) > 1 else slice(None)
        first = int(np.argmax(group == g))
        layout = [int(lengths[first]) for *_, lengths in prepared]
        fields: list[tuple[str, str]] = [("_count", ">i2")]
        for (name, dtype, _, _), length in zip(prepared, layout, strict=True):
            fields.append((f"_len_{name}", ">i4"))
            if length > 0:
                fields.append((name, f"S{length}" if dtype == "text" else dtype))
        rows = np.zeros(int(np.count_nonzero(group == g)), dtype=np.dtype(fields))
        rows["_count"] = len(prepared)
        for (name, _, values, _), length in zip(prepared, layout, strict=True):
            rows[f"_len_{name}"] = length
            if length > 0:
                rows[name] = values[member]
        parts.append(rows.tobytes())
    parts.append(struct.pack(">h", -1))
    return b"".join(parts)


def copy_row_dtype(fields: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> np.dtype:
    """A packed record of one binary COPY row: field count, then a (length, value) pair per field."""
    parts: list[tuple[str, str]] = [("_count", ">i2")]
    for name, dtype in fields:
        parts += [(f"_len_{name}", ">i4"), (name, dtype)]
    return np.dtype(parts)


def decode_binary_copy(payload: bytes, fields: tuple[tuple[str, str], ...]) -> np.ndarray:
    """Rows of a binary COPY whose fields are all fixed-width and NOT NULL, as a structured array."""
    if not payload:
        return np.zeros(0, dtype=copy_row_dtype(fields))
    if not payload.startswith(COPY_SIGNATURE):
        raise ValueError("not a binary COPY stream")
    (extension,) = struct.unpack_from(">i", payload, len(COPY_SIGNATURE) + 4)
    start = len(COPY_SIGNATURE) + 8 + extension
    body = payload[start:-2]  # drop the trailer (-1 as int16)
    dtype = copy_row_dtype(fields)
    if len(body) % dtype.itemsize:
        raise ValueError("binary COPY rows are not the expected fixed width (a NULL or a type mismatch)")
    return np.frombuffer(body, dtype=dtype)
