"""Command-line entry points of the jobs: ``batch``, ``score``, ``replay``, ``scheduler``, ``finetune``,
``jobs list``, ``jobs run``, ``store maintain``, ``store prune``.

Mounted on the main ``candlecast`` app with ``register(app)``. Each command is also safe to call from an
external cron (Kubernetes CronJob, Railway cron, a systemd timer) instead of ``candlecast scheduler``:
``candlecast jobs run score-signals-1h`` takes the same advisory lock as the scheduler, so overlapping
invocations never run the job twice at once.

Exit status of ``batch`` and ``jobs run`` (``jobs.records.EXIT_CODES``):

- 0: the run is 'ok' (every symbol written, or skipped for a stated reason such as stale candles) or 'skipped'
  (nothing to do: each symbol's forecast still stands; or the slot or job is being run elsewhere right now);
- 1: 'failed': nothing was written (every symbol failed or had no usable candles), or the run itself failed;
- 4: 'partial': some symbols were written and some failed (e.g. 12 of 14 requests failed).

2 is a usage error (Typer). ``replay`` exits 0 when it wrote forecasts, 1 when it wrote none.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer
from rich.table import Column, Table

from candlecast.cli_options import console, parse_time
from candlecast.config import get_settings
from candlecast.jobs.batch import BatchResult, run_batch
from candlecast.jobs.ensemble import ENSEMBLE_MODEL, run_ensemble
from candlecast.jobs.finetune.cli import finetune_cmd
from candlecast.jobs.maintenance import MAINTENANCE_JOB, run_prune, run_store_maintenance
from candlecast.jobs.records import exit_code
from candlecast.jobs.replay import busiest_window, run_replay
from candlecast.jobs.scheduler import list_jobs, run_job, run_scheduler
from candlecast.jobs.scoring import run_scoring
from candlecast.store import connect
from candlecast.store.jobs import job_lock
from candlecast.store.retention import PruneResult

__all__ = ["jobs_app", "register", "store_app"]

jobs_app = typer.Typer(help="The cron table: list jobs, run one now.", no_args_is_help=True)
store_app = typer.Typer(help="History upkeep: monthly partitions and sample retention.", no_args_is_help=True)


class Timeframe(str, Enum):
    h1 = "1h"
    d1 = "1d"


TimeframeOption = Annotated[Timeframe, typer.Option("--timeframe", "-t", help="Candle timeframe.")]
AsOfOption = Annotated[
    str | None, typer.Option("--as-of", help="ISO time (naive = UTC) to act as of; default now.", show_default=False)
]


def _symbols(value: str | None) -> list[str] | None:
    return None if not value else [s.strip().upper() for s in value.split(",") if s.strip()]


def _print_batch(result: BatchResult) -> None:
    console.print(
        f"[bold]{result.job_name}[/] slot {result.as_of:%Y-%m-%d %H:%M} UTC: {len(result.ok)} written, "
        f"{len(result.failed)} failed, {len(result.skipped)} skipped in {result.duration_s:.1f} s ({result.status})"
    )
    if result.detail:
        console.print(f"  {result.detail}", soft_wrap=True, highlight=False)
    for symbol, error in sorted(result.failed.items()):
        console.print(f"  [red]failed[/] {symbol}: {error}")
    for symbol, why in sorted(result.skipped.items()):
        console.print(f"  [yellow]skipped[/] {symbol}: {why}")


def batch_cmd(
    timeframe: TimeframeOption,
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            help="A configured model (CANDLECAST_MODELS), or 'ensemble': the CRPS-weighted "
            "combination of the configured models' forecasts of the slot (run their batches first).",
        ),
    ],
    as_of: AsOfOption = None,
    symbols: Annotated[str | None, typer.Option(help="Comma-separated symbols; default all active.")] = None,
    local: Annotated[bool, typer.Option("--local", help="Run the model in-process instead of over HTTP.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Forecast every active instrument for one slot and store the forecasts.

    Exit status: 0 all written (or skipped for a stated reason, or nothing to do, or the slot is being forecast
    by another run), 4 some symbols failed, 1 nothing written.
    """
    settings = get_settings()
    with connect(settings, migrate=True) as engine:
        if model == ENSEMBLE_MODEL:
            result = run_ensemble(
                settings, engine, timeframe.value, as_of=parse_time(as_of, "--as-of"), symbols=_symbols(symbols),
                local=local or None,  # capabilities of the members: in-process, else settings.jobs.local
            )  # fmt: skip
            _print_batch(result)
            raise typer.Exit(result.exit_code)
        result = run_batch(
            settings, engine, timeframe.value, model, as_of=parse_time(as_of, "--as-of"), symbols=_symbols(symbols),
            local=local, progress=progress,
        )  # fmt: skip
    _print_batch(result)
    raise typer.Exit(result.exit_code)


def score_cmd(
    timeframe: TimeframeOption,
    as_of: AsOfOption = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="Re-check every forecast made since this time, not only the scoring backlog (candles loaded "
            "late into old gaps); with --rescore, rescore only those."
        ),
    ] = None,
    refresh: Annotated[
        bool, typer.Option(help="Refresh the performance table and the touch-question summary afterwards.")
    ] = True,
    rescore: Annotated[
        bool, typer.Option(help="Delete the existing scores and compute them again (after a scoring change).")
    ] = False,
) -> None:
    """Score forecast steps whose candles have closed, then refresh signal_performance and path_performance."""
    settings = get_settings()
    with connect(settings, migrate=True) as engine:
        result = run_scoring(
            settings, engine, timeframe.value, as_of=parse_time(as_of, "--as-of"), since=parse_time(since, "--since"),
            refresh=refresh, rescore=rescore,
        )  # fmt: skip
    console.print(
        f"[bold]{result.job_name}[/]: {result.steps_scored} steps of {result.predictions_scored} forecasts scored "
        f"in {result.duration_s:.1f} s"
    )


def replay_cmd(
    timeframe: TimeframeOption,
    model: Annotated[
        str, typer.Option("--model", "-m", help="A configured model, or 'ensemble' (replayed with its members).")
    ],
    start: Annotated[
        str | None, typer.Option("--from", help="First slot (ISO time; naive = UTC); default: see --days.")
    ] = None,
    end: Annotated[str | None, typer.Option("--to", help="Last slot (ISO time; naive = UTC).")] = None,
    days: Annotated[
        int,
        typer.Option(
            min=1, help="Without --from/--to: replay this many days where the stored data covers most instruments."
        ),
    ] = 90,
    every: Annotated[int, typer.Option(min=1, help="Forecast every N candles.")] = 1,
    symbols: Annotated[str | None, typer.Option(help="Comma-separated symbols; default all active.")] = None,
    service: Annotated[
        bool, typer.Option("--service", help="Call the inference service instead of in-process.")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Walk-forward backtest: batch then score at every slot from --from to --to, as of that slot."""
    settings = get_settings()
    first, last = parse_time(start, "--from"), parse_time(end, "--to")
    if (first is None) != (last is None):
        raise typer.BadParameter("give both --from and --to, or neither (then --days applies)")
    with connect(settings, migrate=True) as engine:
        if first is None or last is None:
            first, last = busiest_window(engine, timeframe.value, days)
            console.print(f"replaying {first:%Y-%m-%d %H:%M} -> {last:%Y-%m-%d %H:%M} UTC")
        result = run_replay(
            settings, engine, timeframe.value, model, first, last, every=every, local=not service,
            symbols=_symbols(symbols), progress=progress,
        )  # fmt: skip
    console.print(
        f"[bold]replay {model} {timeframe.value}[/]: {result.slots} slots, {result.predictions_written} forecasts, "
        f"{result.symbols_failed} failures, {result.steps_scored} steps scored in {result.duration_s:.1f} s"
    )
    raise typer.Exit(0 if result.predictions_written else 1)


def scheduler_cmd() -> None:
    """Run the cron table until SIGTERM/SIGINT (running jobs finish first)."""
    settings = get_settings()
    with connect(settings, migrate=True) as engine:
        run_scheduler(settings, engine)


@jobs_app.command("list")
def jobs_list_cmd() -> None:
    """Each job of the cron table: schedule, next run, and its last run."""
    settings = get_settings()
    with connect(settings, migrate=True) as engine:
        rows = list_jobs(settings, engine)
    # job names are what `jobs run NAME` takes: never cut them
    table = Table(
        Column("job", no_wrap=True), "schedule (UTC)", "does", "next run", "last run", "status", "took", "result"
    )
    skipped: list[str] = []  # why each skipped job does not run, printed whole under the table
    for row in rows:
        spec, last = row.spec, row.last_run
        does = f"{spec.kind} {spec.timeframe or ''} {spec.model or ''}".strip()
        if row.next_run:
            next_run = f"{row.next_run:%Y-%m-%d %H:%M}"
        else:
            skipped.append(f"{spec.name}: {spec.skip_reason}")
            next_run = f"[yellow]skipped ({len(skipped)})[/]"
        if last is None:
            table.add_row(spec.name, spec.cron, does, next_run, "never", "", "", "")
            continue
        if last.status == "abandoned":  # its process ended at a time nobody recorded
            took = "?"
        else:
            took = f"{last.duration_s:.1f} s" if last.duration_s is not None else "running"
        counts = {k: v for k, v in last.counts.items() if isinstance(v, int | float) and k != "duration_s"}
        summary = ", ".join(f"{k} {v}" for k, v in counts.items()) or (last.error or "")
        table.add_row(
            spec.name, spec.cron, does, next_run, f"{last.started_at:%Y-%m-%d %H:%M}", last.status, took, summary
        )
    console.print(table)
    if skipped:
        console.print("[yellow]skipped jobs[/] (numbered as in the table):")
        for i, line in enumerate(skipped, 1):
            console.print(f"  {i}. {line}", soft_wrap=True, highlight=False)


@jobs_app.command("run")
def jobs_run_cmd(
    name: Annotated[str, typer.Argument(help="A job of the cron table (see `candlecast jobs list`).")],
    as_of: AsOfOption = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar (batch jobs).")] = True,
) -> None:
    """Run one job now, under its advisory lock (for external cron)."""
    settings = get_settings()
    with connect(settings, migrate=True) as engine:
        try:
            outcome = run_job(settings, engine, name, as_of=parse_time(as_of, "--as-of"), progress=progress)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="NAME") from None
    if isinstance(outcome.result, BatchResult):
        _print_batch(outcome.result)
    console.print(f"{name}: {outcome.action} {outcome.status or ''} {outcome.detail}".rstrip())
    raise typer.Exit(exit_code(outcome.status))  # locked, claimed or skipped (status None): 0


@store_app.command("maintain")
def store_maintain_cmd(
    prune: Annotated[bool, typer.Option(help="Also drop old sample paths (store.keep_samples_days).")] = True,
) -> None:
    """Create the coming months' partitions, move rows out of the default partitions, apply retention."""
    settings = get_settings()
    with connect(settings, migrate=True) as engine:
        with job_lock(engine, MAINTENANCE_JOB) as acquired:
            if not acquired:
                console.print(f"{MAINTENANCE_JOB} is running elsewhere; nothing done")
                return
            outcome = run_store_maintenance(settings, engine, prune=prune)
    if outcome.partitions is not None:
        console.print(f"partitions created: {', '.join(outcome.partitions.created) or 'none'}; rows moved: "
                      f"{sum(outcome.partitions.moved.values())}")  # fmt: skip
    _print_prune(outcome.prune)


@store_app.command("prune")
def store_prune_cmd(
    keep_days: Annotated[
        float | None,
        typer.Option("--keep-days", min=0, help="Override store.keep_samples_days.", show_default=False),
    ] = None,
) -> None:
    """Drop the sample paths of forecasts older than store.keep_samples_days (quantiles and scores stay)."""
    settings = get_settings()
    if keep_days is None and settings.store.keep_samples_days is None:
        raise typer.BadParameter(
            "retention is off: set store.keep_samples_days (CANDLECAST_STORE__KEEP_SAMPLES_DAYS) or pass --keep-days",
            param_hint="--keep-days",
        )
    with connect(settings, migrate=True) as engine:
        with job_lock(engine, MAINTENANCE_JOB) as acquired:
            if not acquired:
                console.print(f"{MAINTENANCE_JOB} is running elsewhere; nothing done")
                return
            _print_prune(run_prune(settings, engine, keep_days=keep_days))


def _print_prune(result: PruneResult | None) -> None:
    if result is None:
        console.print("retention off (store.keep_samples_days unset): samples kept")
    else:
        console.print(f"samples dropped from {result.pruned} forecasts made before {result.cutoff:%Y-%m-%d %H:%M} UTC "
                      f"({result.batches} batches)")  # fmt: skip


def register(app: typer.Typer) -> None:
    """Mount the job commands on the main app: batch, score, replay, scheduler, and the ``jobs`` group."""
    app.command("batch")(batch_cmd)
    app.command("score")(score_cmd)
    app.command("replay")(replay_cmd)
    app.command("scheduler")(scheduler_cmd)
    app.command("finetune")(finetune_cmd)
    app.add_typer(jobs_app, name="jobs")
    app.add_typer(store_app, name="store")
