"""Operations: recent job runs and data freshness (``/api/v1/jobs``), and the summary ``/health`` reports."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine

from candlecast.config import GatewaySettings
from candlecast.gateway.payloads import Payload
from candlecast.gateway.payloads.fields import data_status, iso, parse_iso
from candlecast.store.jobs import JobRun, last_job_runs, recent_job_runs
from candlecast.store.status import data_freshness

__all__ = ["freshness", "jobs_payload", "status_payload"]


def _job_run(run: JobRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "job_name": run.job_name,
        "status": run.status,
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "duration_s": run.duration_s,
        "as_of": iso(run.as_of),
        "counts": run.counts,
        "errors": run.errors,
        "error": run.error,
        "host": run.host,
    }


def freshness(engine: Engine) -> dict[str, Any]:
    """Per timeframe: the newest candle, how many symbols have candles, the newest forecast."""
    return {
        tf: {
            "newest_candle_ts": iso(f.newest_candle_ts),
            "symbols_with_candles": f.symbols_with_candles,
            "newest_forecast_as_of": iso(f.newest_forecast_as_of),
            "newest_generated_at": iso(f.newest_generated_at),
            "forecast_slots": f.forecast_slots,
        }
        for tf, f in data_freshness(engine).items()
    }


def jobs_payload(engine: Engine, limit: int, gw: GatewaySettings) -> Payload:
    """Job runs and freshness; the data status is that of the newest forecast of any timeframe."""
    fresh = freshness(engine)
    newest = max((t for f in fresh.values() if (t := parse_iso(f["newest_forecast_as_of"])) is not None), default=None)
    return {
        "runs": [_job_run(r) for r in recent_job_runs(engine, limit=limit)],
        "last_runs": {name: _job_run(r) for name, r in last_job_runs(engine).items()},
        "freshness": fresh,
        **data_status(newest, gw.replay_after_h),
        "stale": False,
    }


def status_payload(engine: Engine) -> Payload:
    """The last run of each job and data freshness, as ``/health`` shows them."""
    return {
        "last_job_runs": {
            name: {"status": r.status, "started_at": iso(r.started_at), "finished_at": iso(r.finished_at)}
            for name, r in last_job_runs(engine).items()
        },
        "freshness": freshness(engine),
    }
