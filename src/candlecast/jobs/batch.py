"""The batch job: forecasts for every active instrument, written ahead of time as one slot per
(symbol, timeframe, model, as_of).

The slot time
    ``as_of`` is the run's as-of time truncated to the timeframe grid (the hour for 1h, 00:00 UTC for 1d).
    Candles close on that grid, so truncation loses nothing: a run at 12:55 and one at 12:05 both see the
    candles closed by 12:00 and write the same slot. Re-running a slot replaces its rows, never duplicates.

One run at a time per slot
    A run holds an advisory lock on its (model, timeframe, slot) for its whole length. A second run for the
    same slot that starts meanwhile does not wait: it does nothing, says which run holds the slot, and records
    itself 'skipped' (exit status 0). Once the first has finished, running the slot again replaces it as usual.

Per run, streamed: thousands of symbols never sit in memory at once
    1. read the last ``jobs.context_<tf>`` candles that had closed by the slot time, ``jobs.read_chunk_symbols``
       instruments at a time (one query per chunk), while the requests of the previous chunk run;
    2. build the event tensor when the model uses events and the events package is present (otherwise none
       is sent, and ``event_context`` says why);
    3. send the series, ``jobs.request_series_per_call`` per request and ``jobs.concurrency`` requests at a
       time, to the inference service (``InferenceClient``: timeouts, retries with backoff on connection
       errors and 502/503/504), or to the model in-process with ``local=True``; a failed request fails only
       its own symbols;
    4. a writer thread writes the answers while the next requests run: everything answered since its last
       write, up to ``jobs.write_batch_rows`` forecasts, in one transaction (binary COPY,
       ``store.predictions.upsert_predictions``). A write the database refuses is retried one forecast per
       transaction, so one bad row fails alone. Requests never run more than a bounded number of groups ahead
       of the writer (the larger of twice ``jobs.concurrency`` and one write), so memory stays flat.

Every written forecast fires the ``ml_predictions`` NOTIFY (a row trigger) the gateway listens to. Nothing is
ever deleted: when the service is unreachable the previous forecasts stay and the gateway keeps serving them.
Every run leaves a ``job_runs`` row (ok / failed / skipped counts, per-symbol errors, duration, and where the
time went: ``timings``); its status is 'ok' (nothing failed), 'partial' (some symbols failed), 'failed'
(nothing written) or 'skipped' (nothing to do: every symbol's forecast still stands, or another run holds the
slot). The exit status follows it (``jobs.records.EXIT_CODES``: 0, 4, 1, 0).

Seeds are derived from (model, timeframe, slot, symbol), so re-running a slot reproduces it exactly, over
HTTP or in-process alike, however the symbols are grouped or chunked.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.engine import Engine

from candlecast.config import Settings
from candlecast.errors import InferenceRequestError, InputError, NotFoundError
from candlecast.inference.transports import QUANTILE_LEVELS, ForecastTransport, open_transport
from candlecast.jobs.calibrate import calibrate_predictions
from candlecast.jobs.records import exit_code, recorded_run
from candlecast.models.base import OHLCV_COLUMNS, Forecast, SeriesInput
from candlecast.models.calendars import next_timestamps
from candlecast.models.provenance import CODE_VERSION, candles_sha256, plain, stable_hash
from candlecast.store.candles import Instrument, get_instruments, latest_candles_many, timeframe_delta
from candlecast.store.jobs import running_runs, slot_lock
from candlecast.store.predictions import Prediction, previous_slots, upsert_predictions

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
    skipped: dict[str, str]  # symbol -> why it was not forecast (no or stale candles, no new candle)
    duration_s: float
    run_id: int
    status: str  # 'ok', 'partial', 'failed' or 'skipped'
    # seconds: store_read_s, store_write_s (busy time of the reader and of the writer; *_cpu_s their CPU time),
    # requests_s (time with at least one request in flight), request_calls_s (the requests' durations added up)
    timings: dict[str, float] = field(default_factory=dict)
    detail: str | None = None  # why nothing was done or written, when so

    @property
    def exit_code(self) -> int:
        """0 ok or skipped, 4 partial (some symbols failed), 1 failed (nothing written)."""
        return exit_code(self.status)


# -- the job ---------------------------------------------------------------------------------------


@dataclass
class _Symbol:
    symbol: str
    calendar: str
    asset_class: str
    series: SeriesInput | None = None
    event_context: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)  # the job's part: configuration, cutoffs, inputs


@dataclass
class _Chunk:
    """The instruments of one read: those ready to forecast, and those skipped with the reason."""

    ready: list[_Symbol] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    unchanged: set[str] = field(default_factory=set)  # skipped because their forecast still stands


@dataclass
class _Tally:
    """What happened to each symbol, filled by the reader (skips) and the writer (written, failed)."""

    ok: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    unchanged: set[str] = field(default_factory=set)  # skipped because their forecast still stands


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
    (``local`` picks in-process over HTTP). ``on_symbol(symbol, error_or_None)`` is called (from the writer
    thread) as each symbol is written or fails. ``job_name`` defaults to ``batch-<model>-<timeframe>``;
    ``run_id`` continues a ``job_runs`` row a scheduler already claimed.
    """
    slot = slot_time(as_of, timeframe)
    job_name = job_name or f"batch-{model}-{timeframe}"
    tally = _Tally()
    timings = _Timings()
    with (
        slot_lock(engine, model, timeframe, slot) as free,
        recorded_run(engine, job_name, as_of=slot, run_id=run_id, record=record) as run,
    ):
        if not free:
            run.status, run.error = "skipped", _slot_taken(engine, model, timeframe, slot, run.id)
            log.info("%s: %s", job_name, run.error)
        else:
            own_transport = transport is None
            try:
                if transport is None:
                    transport = open_transport(settings, model, local)
                _forecast_and_write(
                    settings, engine, timeframe, model, slot, symbols, transport, tally, timings, progress, on_symbol
                )
            finally:
                if own_transport and transport is not None:
                    transport.close()
            run.status, run.error = _verdict(tally)
        run.errors = dict(tally.failed)
        run.counts.update(
            ok=len(tally.ok), failed=len(tally.failed), skipped=len(tally.skipped), skipped_symbols=tally.skipped,
            timings=timings.rounded(),
        )  # fmt: skip
    log.log(
        logging.INFO if record else logging.DEBUG,  # a replay logs its own summary, not one line per slot
        "%s slot %s: %d written, %d failed, %d skipped in %.1f s (%s)",
        job_name, slot.isoformat(), len(tally.ok), len(tally.failed), len(tally.skipped), run.duration_s, run.status,
    )  # fmt: skip
    return BatchResult(
        job_name, timeframe, model, slot, tuple(sorted(tally.ok)), tally.failed, tally.skipped, run.duration_s,
        run.id, run.status, timings.rounded(), run.error,
    )  # fmt: skip


def _verdict(tally: _Tally) -> tuple[str, str | None]:
    """The run's status and, when nothing was written, why."""
    if tally.ok:
        return ("partial" if tally.failed else "ok"), None
    if tally.failed:
        return "failed", f"no forecast was written; {len(tally.failed)} symbols failed"
    if tally.skipped and set(tally.skipped) == tally.unchanged:
        return "skipped", "nothing to do: no new candle since each symbol's previous forecast"
    if not tally.skipped:
        return "failed", "no forecast was written: no instruments to forecast"
    return "failed", f"no forecast was written; {len(tally.skipped)} symbols skipped (no usable candles)"


def _slot_taken(engine: Engine, model: str, timeframe: str, slot: datetime, own_run: int) -> str:
    """Why a run found its slot locked, naming the runs that hold it when they can be told apart."""
    holders = [
        f"job run {r.id} ({r.job_name} on {r.host}, started {r.started_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC)"
        for r in running_runs(engine, as_of=slot)
        if r.id != own_run and "batch" in r.job_name and r.job_name.endswith(timeframe)
    ]
    who = "; ".join(holders) if holders else "another run"
    return (
        f"skipped: slot {slot.isoformat()} of {model} {timeframe} is being forecast by {who}; "
        "its own record reports the outcome"
    )


def _forecast_and_write(
    settings: Settings,
    engine: Engine,
    timeframe: str,
    model: str,
    slot: datetime,
    symbols: Sequence[str] | None,
    transport: ForecastTransport,
    tally: _Tally,
    timings: _Timings,
    progress: bool,
    on_symbol: Callable[[str, str | None], None] | None,
) -> None:
    """Read chunks of instruments, request their forecasts on ``jobs.concurrency`` threads, and hand the
    answers to a writer thread that writes them in batches while the next requests run."""
    cfg = settings.jobs
    with timings.timed("store_read_s"):
        instruments = {i.symbol: i for i in get_instruments(engine, symbols, active_only=symbols is None)}
    wanted = sorted(instruments) if symbols is None else list(dict.fromkeys(symbols))
    unknown = [s for s in wanted if s not in instruments]
    if unknown:
        raise NotFoundError("symbols", f"unknown instrument(s) {unknown}", available=sorted(instruments))
    pred_len = cfg.pred_len_1h if timeframe == "1h" else cfg.pred_len_1d
    size = max(1, cfg.request_series_per_call)
    workers = max(1, cfg.concurrency)
    write_rows = max(1, cfg.write_batch_rows)
    chunk = max(1, cfg.read_chunk_symbols)
    # groups requested but not yet written: the reader waits for the writer beyond this
    capacity = threading.Semaphore(max(2 * workers, -(-write_rows // size)))
    with _progress_bar(progress, f"{model} {timeframe} {slot:%Y-%m-%d %H:%M}", len(wanted)) as advance:

        def skip(symbol: str, why: str, unchanged: bool = False) -> None:
            tally.skipped[symbol] = why
            if unchanged:
                tally.unchanged.add(symbol)
            advance()

        def done(symbol: str, error: str | None) -> None:
            (tally.failed.__setitem__(symbol, error) if error else tally.ok.append(symbol))
            advance()
            if on_symbol is not None:
                on_symbol(symbol, error)

        writer = _Writer(settings, engine, slot, timeframe, model, write_rows, capacity, timings, done)
        writer.start()

        def request(group: list[_Symbol]) -> list[Forecast | str]:
            return _request_group(transport, group, pred_len, cfg.sample_count, model, timeframe, slot, timings)

        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="batch") as pool:
                for start in range(0, len(wanted), chunk):
                    names = wanted[start : start + chunk]
                    with timings.timed("store_read_s"):
                        todo = _read_chunk(settings, engine, timeframe, model, slot, names, instruments, transport)
                    for symbol, why in todo.skipped.items():
                        skip(symbol, why, symbol in todo.unchanged)
                    for first in range(0, len(todo.ready), size):
                        group = todo.ready[first : first + size]
                        writer.wait_for_room()
                        writer.follow(group, pool.submit(request, group))
        except BaseException:
            writer.finish(reraise=False)  # what was answered is still written; the reader's error is the news
            raise
        writer.finish()


def _read_chunk(
    settings: Settings,
    engine: Engine,
    timeframe: str,
    model: str,
    slot: datetime,
    names: list[str],
    instruments: dict[str, Instrument],
    transport: ForecastTransport,
) -> _Chunk:
    """The context of each instrument of a chunk as of the slot; instruments without usable candles are
    skipped, with the reason."""
    cfg = settings.jobs
    context = cfg.context_1h if timeframe == "1h" else cfg.context_1d
    # the job's minimum for the timeframe, or the model's own when it needs more (e.g. GARCH's fit window)
    min_context = max(cfg.min_context_for(timeframe), transport.capabilities().min_context)
    frames = latest_candles_many(engine, names, timeframe, context, slot)
    previous = previous_slots(engine, model, timeframe, slot, names) if cfg.skip_unchanged else {}
    chunk = _Chunk()
    job_config = _job_config(settings, timeframe, transport)
    for symbol in names:
        calendar = settings.market_calendars.get(instruments[symbol].asset_class, "24/7")
        frame = frames.pop(symbol, None)
        if frame is None or len(frame) < min_context:
            found = 0 if frame is None else len(frame)
            chunk.skipped[symbol] = f"{found} candles closed by {slot.isoformat()} (need {min_context})"
            continue
        last_close_time = frame["ts"].iloc[-1].to_pydatetime() + timeframe_delta(timeframe)
        if (stale := _missing_candle(frame["ts"].iloc[-1], timeframe, calendar, slot)) is not None:
            chunk.skipped[symbol] = stale
            continue
        if symbol in previous and previous[symbol] >= last_close_time:
            since = previous[symbol].isoformat()
            chunk.skipped[symbol] = f"no new candle since the forecast of {since} (market closed)"
            chunk.unchanged.add(symbol)
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
            chunk.skipped[symbol] = f"unusable candles: {exc}"
            continue
        item.provenance = _job_provenance(item.series, job_config)
        chunk.ready.append(item)
    _attach_events(settings, engine, timeframe, slot, chunk.ready, transport)
    gives_samples = transport.capabilities().gives_samples  # the ensemble reads it from each stored row
    for item in chunk.ready:
        item.event_context["gives_samples"] = gives_samples
    return chunk


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
    cutoffs = inputs.cutoffs(slot)
    for item in todo:
        assert item.series is not None
        item.provenance.setdefault("data_cutoff", {}).update(cutoffs)
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


class _Writer:
    """The writer thread: takes the answers of finished requests and writes them in batches.

    Everything answered since the last write goes into the next one (up to ``write_rows`` forecasts), so
    writes grow when the database is the slower side and stay small when the model is. ``capacity`` counts
    the groups requested but not yet written: the reader takes one before each request (``wait_for_room``)
    and the writer gives it back once the group is written or failed.
    """

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        slot: datetime,
        timeframe: str,
        model: str,
        write_rows: int,
        capacity: threading.Semaphore,
        timings: _Timings,
        done: Callable[[str, str | None], None],
    ) -> None:
        self.settings, self.engine, self.slot, self.timeframe, self.model = settings, engine, slot, timeframe, model
        self.write_rows, self.capacity, self.timings, self.done = write_rows, capacity, timings, done
        self.answers: queue.SimpleQueue[tuple[list[_Symbol], list[Forecast | str]] | None] = queue.SimpleQueue()
        self.error: BaseException | None = None  # what stopped the writer (e.g. an on_symbol callback raising)
        self.thread = threading.Thread(target=self._run, name="batch-writer", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def wait_for_room(self) -> None:
        """Block until the writer has caught up enough for one more request; re-raise what stopped it."""
        while not self.capacity.acquire(timeout=0.5):
            self._raise_if_stopped()
        self._raise_if_stopped()

    def follow(self, group: list[_Symbol], future: Future[list[Forecast | str]]) -> None:
        """Queue the group's answers for writing as soon as its request finishes."""

        def hand_over(done: Future[list[Forecast | str]]) -> None:  # on the request's thread
            try:
                outcomes = done.result()
            except BaseException as exc:  # _request_group catches every error: this is a last resort
                outcomes = [f"{type(exc).__name__}: {exc}"] * len(group)
            self.answers.put((group, outcomes))

        future.add_done_callback(hand_over)

    def finish(self, reraise: bool = True) -> None:
        """Write what is still queued, stop the thread, and re-raise what stopped it early."""
        self.answers.put(None)
        self.thread.join()
        if reraise:
            self._raise_if_stopped()

    def _raise_if_stopped(self) -> None:
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        finished = False
        while not finished:
            first = self.answers.get()
            if first is None:
                break
            batch, rows = [first], len(first[0])
            while rows < self.write_rows:
                try:
                    more = self.answers.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    finished = True
                    break
                batch.append(more)
                rows += len(more[0])
            try:
                if self.error is None:
                    self._write(batch)
            except BaseException as exc:
                self.error = exc
            finally:
                for _ in batch:
                    self.capacity.release()

    def _write(self, batch: list[tuple[list[_Symbol], list[Forecast | str]]]) -> None:
        rows: list[tuple[str, Prediction]] = []
        for group, outcomes in batch:
            for item, outcome in zip(group, outcomes, strict=True):
                if isinstance(outcome, str):
                    self.done(item.symbol, outcome)
                elif (first := outcome.target_timestamps[0]) < self.slot:  # never store a forecast of the past
                    self.done(item.symbol, f"first target {first.isoformat()} is before the slot")
                else:
                    try:
                        rows.append((item.symbol, _prediction(item, outcome, self.timeframe, self.model, self.slot)))
                    except (ValueError, KeyError) as exc:  # a malformed answer fails its symbol alone
                        self.done(item.symbol, f"unusable forecast: {exc}")
        # the band each forecast serves (jobs.calibrate), from what was known at the slot
        with self.timings.timed("calibrate_s"):
            served = calibrate_predictions(self.settings, self.engine, [p for _, p in rows])
        rows = [(symbol, p) for (symbol, _), p in zip(rows, served, strict=True)]
        with self.timings.timed("store_write_s"):
            errors = _write_rows(self.engine, rows)
        for symbol, _ in rows:
            self.done(symbol, errors.get(symbol))


def _write_rows(engine: Engine, rows: list[tuple[str, Prediction]]) -> dict[str, str]:
    """Write the forecasts in one transaction; when the database refuses it, one transaction per forecast, so
    one bad row fails alone. Returns symbol -> error for the forecasts not written."""
    if not rows:
        return {}
    try:
        with engine.begin() as conn:
            upsert_predictions(conn, [p for _, p in rows])
        return {}
    except Exception as exc:
        if len(rows) == 1:
            return {rows[0][0]: _write_error(exc)}
        log.warning("a write of %d forecasts failed (%s); writing them one at a time", len(rows), _write_error(exc))
    errors = {}
    for symbol, prediction in rows:
        try:
            with engine.begin() as conn:
                upsert_predictions(conn, [prediction])
        except Exception as exc:
            errors[symbol] = _write_error(exc)
    return errors


def _write_error(exc: Exception) -> str:
    return f"write failed: {type(exc).__name__}: {exc}".strip()


def _request_group(
    transport: ForecastTransport,
    group: list[_Symbol],
    pred_len: int,
    sample_count: int,
    model: str,
    timeframe: str,
    slot: datetime,
    timings: _Timings,
) -> list[Forecast | str]:
    """One request for the group: a forecast or an error message per symbol.

    A request refused as invalid (4xx) is retried one series at a time so one bad series fails alone.
    """
    series = [item.series for item in group if item.series is not None]
    seeds = [_seed(model, timeframe, slot, item.symbol) for item in group if item.series is not None]
    try:
        with timings.request():
            return list(transport.forecast(series, pred_len, sample_count, seeds))
    except Exception as exc:
        if len(group) > 1 and _is_bad_request(exc):
            out: list[Forecast | str] = []
            for item in group:
                out.extend(_request_group(transport, [item], pred_len, sample_count, model, timeframe, slot, timings))
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
        provenance=provenance_record(f, model, item.provenance),
        # per-step high and low paths of models that give OHLC paths (open, high, low, close), for path questions
        samples_high=f.ohlc_samples[..., 1] if f.ohlc_samples is not None and f.samples.size else None,
        samples_low=f.ohlc_samples[..., 2] if f.ohlc_samples is not None and f.samples.size else None,
    )


def _job_config(settings: Settings, timeframe: str, transport: ForecastTransport) -> dict[str, Any]:
    """The job settings that shape a forecast of ``timeframe`` (no URLs, no secrets, no throughput knobs)."""
    cfg, uses_events = settings.jobs, settings.jobs.send_events and transport.capabilities().uses_events
    return {
        "timeframe": timeframe,
        "pred_len": cfg.pred_len_1h if timeframe == "1h" else cfg.pred_len_1d,
        "context": cfg.context_1h if timeframe == "1h" else cfg.context_1d,
        "min_context": cfg.min_context_for(timeframe),
        "sample_count": cfg.sample_count,
        "quantile_levels": list(QUANTILE_LEVELS),
        "market_calendars": dict(settings.market_calendars),
        "events": plain(settings.events) if uses_events else None,
        "leaders": list(settings.leaders) if uses_events else None,
        "calibration": plain(getattr(settings, "calibration", None)),
    }


def _job_provenance(series: SeriesInput, job_config: dict[str, Any]) -> dict[str, Any]:
    """The job's part of a forecast's provenance: its configuration, the instrument's cutoff and inputs hash."""
    return {
        "job_config": job_config,
        "data_cutoff": {"instrument": series.timestamps[-1].isoformat()},
        "inputs": {
            "candles": len(series),
            "first_candle": series.timestamps[0].isoformat(),
            "sha256": candles_sha256(series.timestamps.asi8, series.ohlcv),  # type: ignore[attr-defined]
        },
    }


def provenance_record(f: Forecast, model: str, job: dict[str, Any]) -> dict[str, Any]:
    """A stored forecast's provenance (docs/provenance.md): the model's part as the model reported it, and
    the job's; nothing in it depends on when or where the job ran, so a re-run of the slot writes it again."""
    served = f.provenance or {}
    model_config, job_config = served.get("config"), job.get("job_config")
    return {
        "model": served.get("model", model),
        "revision": served.get("revision", f.model_version),
        "checkpoint_sha256": served.get("checkpoint_sha256"),
        "adapter": served.get("adapter"),
        "code_version": {"job": CODE_VERSION, "model_server": served.get("code_version")},
        "config": {"model": model_config, "job": job_config},
        "config_sha256": stable_hash({"model": model_config, "job": job_config}),
        "data_cutoff": job.get("data_cutoff", {}),
        "inputs": job.get("inputs"),
        "seed": f.seed,
    }


class _Timings:
    """Where a run's time goes, from several threads: busy seconds per part (``<part>_s``, wall clock, and
    ``<part>_cpu_s``, the CPU time of the thread doing it: the difference is waiting, on the database or on
    other threads of this process), and the time with at least one request in flight (requests overlap, so
    their durations added up are reported apart)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds: dict[str, float] = dict.fromkeys(
            ("store_read_s", "store_read_cpu_s", "store_write_s", "store_write_cpu_s", "request_calls_s"), 0.0
        )
        self._in_flight = 0
        self._busy_since = 0.0
        self._requests_s = 0.0

    @contextlib.contextmanager
    def timed(self, name: str) -> Iterator[None]:
        started, cpu = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            with self._lock:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
                cpu_name = name.removesuffix("_s") + "_cpu_s"
                self.seconds[cpu_name] = self.seconds.get(cpu_name, 0.0) + time.thread_time() - cpu

    @contextlib.contextmanager
    def request(self) -> Iterator[None]:
        started = time.perf_counter()
        with self._lock:
            if self._in_flight == 0:
                self._busy_since = started
            self._in_flight += 1
        try:
            yield
        finally:
            ended = time.perf_counter()
            with self._lock:
                self._in_flight -= 1
                self.seconds["request_calls_s"] += ended - started
                if self._in_flight == 0:
                    self._requests_s += ended - self._busy_since

    def rounded(self) -> dict[str, float]:
        with self._lock:
            return {**{k: round(v, 3) for k, v in self.seconds.items()}, "requests_s": round(self._requests_s, 3)}


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
