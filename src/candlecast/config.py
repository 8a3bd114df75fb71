"""One typed settings object for the whole system.

Values come from, in order of precedence: keyword arguments, environment variables
(``CANDLECAST_*``; nested sections use ``__``, e.g. ``CANDLECAST_GATEWAY__PORT=8001``), an optional
TOML file (``CANDLECAST_CONFIG=path/to/candlecast.toml``), then the defaults below.
``DATABASE_URL`` (no prefix) is also accepted, as hosted Postgres providers set it.
"""

from __future__ import annotations

import ipaddress
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

__all__ = [
    "DEFAULT_CRON",
    "DEFAULT_MARKET_CALENDARS",
    "DEFAULT_UNIVERSE",
    "EnsembleSettings",
    "CalibrationSettings",
    "EventSettings",
    "FinetuneSettings",
    "GarchSettings",
    "LEADERS",
    "GatewaySettings",
    "InferenceSettings",
    "JobSettings",
    "ModelSpec",
    "Settings",
    "StoreSettings",
    "is_loopback",
    "get_settings",
]

# The 23 instruments of docs/design.md: symbol -> asset class.
DEFAULT_UNIVERSE: dict[str, str] = {
    **dict.fromkeys(["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT"], "crypto"),
    **dict.fromkeys(["SPY", "QQQ", "IWM", "DIA", "AAPL", "MSFT", "NVDA", "TSLA"], "equity"),
    **dict.fromkeys(["EURUSD", "GBPUSD", "USDJPY", "AUDUSD", "USDCAD"], "fx"),
    **dict.fromkeys(["GOLD", "SILVER", "WTI"], "commodity"),
    **dict.fromkeys(["DXY", "VIX"], "index"),
}
# asset class -> trading calendar (approximate for commodities and indices, which trade nearly 24/5).
DEFAULT_MARKET_CALENDARS: dict[str, str] = {
    "crypto": "24/7",
    "equity": "XNYS",
    "fx": "24/5",
    "commodity": "24/5",
    "index": "24/5",
}
# Cross-asset leaders that feed the event tensor.
LEADERS: tuple[str, ...] = ("BTCUSDT", "SPY", "DXY", "VIX")

# job name -> cron expression (UTC). Model jobs run only when their model is configured.
DEFAULT_CRON: dict[str, str] = {
    "kronos-batch-1h": "55 * * * *",
    "kronos-batch-1d": "45 5 * * *",
    "chronos2-batch-1h": "55 * * * *",
    "chronos2-batch-1d": "45 5 * * *",
    # the statistical baseline: what is served without neural weights, and the bar models are scored against
    "baseline-batch-1h": "55 * * * *",
    "baseline-batch-1d": "45 5 * * *",
    "garch-batch-1h": "55 * * * *",  # GARCH(1,1)-t, the classical anchor (docs/garch.md)
    "garch-batch-1d": "45 5 * * *",
    # the CRPS-weighted ensemble of the models above (docs/jobs.md, "Ensemble"): a few minutes after their batch,
    # within the same slot (1h: the hour's batches run at :55; 1d: at 05:45)
    "ensemble-batch-1h": "59 * * * *",
    "ensemble-batch-1d": "55 5 * * *",
    "score-signals-1h": "5 * * * *",
    "score-signals-1d": "30 6 * * *",
    "kronos-rolling-finetune": "0 6 1 * *",
    # partitions of the coming month, rows the default partitions caught, retention of sample paths (docs/store.md)
    "store-maintenance": "20 4 * * *",
}


class ModelSpec(BaseModel):
    """Where one model's weights come from: a Hugging Face hub id or a local folder."""

    name: str
    kind: str = Field(description="kronos | chronos2 | baseline | garch")
    model_source: str | None = None
    tokenizer_source: str | None = None
    max_context: int = 512
    revision: str | None = None


# Published checkpoints, by the names users put in CANDLECAST_MODELS.
KNOWN_MODELS: dict[str, ModelSpec] = {
    "kronos-mini": ModelSpec(
        name="kronos-mini",
        kind="kronos",
        model_source="NeoQuasar/Kronos-mini",
        tokenizer_source="NeoQuasar/Kronos-Tokenizer-2k",
        max_context=2048,
    ),
    "kronos-small": ModelSpec(
        name="kronos-small",
        kind="kronos",
        model_source="NeoQuasar/Kronos-small",
        tokenizer_source="NeoQuasar/Kronos-Tokenizer-base",
    ),
    "kronos-base": ModelSpec(
        name="kronos-base",
        kind="kronos",
        model_source="NeoQuasar/Kronos-base",
        tokenizer_source="NeoQuasar/Kronos-Tokenizer-base",
    ),
    "chronos-2": ModelSpec(name="chronos-2", kind="chronos2", model_source="amazon/chronos-2", max_context=2048),
    "baseline": ModelSpec(name="baseline", kind="baseline"),
    "garch": ModelSpec(name="garch", kind="garch"),  # its settings are Settings.garch, not max_context
}


class InferenceSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8200
    url: str = "http://127.0.0.1:8200"  # where jobs reach the service
    token: str | None = None  # bearer token; required by the service when set
    device: str = "cpu"
    max_batch_series: int = 64  # micro-batching: most series merged into one model call
    batch_window_ms: float = 5.0  # micro-batching: how long to wait for more requests
    max_body_bytes: int = 8_000_000
    max_context_candles: int = 4096
    max_pred_len: int = 512
    max_sample_count: int = 256
    # series × pred_len × sample_count (× 5 with OHLC paths) per request: bounds the work and the response size
    # (each limit alone let one request ask 64 × 512 × 256 values, a 156 MB answer). The default is the largest
    # request at the default sample count (64 × 512 × 32); a batch job's request (8 × 120 × 32) is 3% of it.
    max_request_values: int = 1_048_576
    request_timeout_s: float = 120.0
    default_sample_count: int = 32
    default_quantile_levels: list[float] = Field(default_factory=lambda: [0.1, 0.5, 0.9])
    max_quantile_levels: int = 99
    workers_per_model: int = 1  # model calls in flight at once per model (1 suits a CPU or one GPU)
    max_queued_series: int = 4096  # series waiting for a model beyond this get 503 (overloaded)
    # torch intra-op threads for model calls (None = torch's default, one per core). On a small shared CPU
    # host 1 is often faster: bench/kronos_decode.py measured 5.3 s with 1 thread vs 9.2 s with 2.
    torch_threads: int | None = None
    # Models that take adapters (Kronos) load the promoted fine-tune adapter of each asset class at start-up,
    # from the manifest the fine-tune job writes (<finetune.adapters_dir>/promoted.json); never the database.
    load_adapters: bool = True
    # `serve-inference --engine ray` (extra "ray"; docs/scale.md): replicas behind Ray Serve's HTTP proxy.
    engine: Literal["plain", "ray"] = "plain"
    ray_address: str | None = None  # a running cluster ("auto", "ray://head:10001"); None = start a local one
    ray_replicas: int = Field(1, ge=1)
    ray_max_replicas: int | None = None  # above ray_replicas: autoscale between the two
    ray_target_ongoing_requests: float = 8.0  # autoscaling: requests in flight per replica it aims at
    ray_replica_cpus: float = 1.0  # CPUs reserved per replica (one replica per CPU group)
    ray_replica_gpus: float = 0.0  # GPUs per replica: 1 = one replica per GPU (with device = "cuda")
    ray_max_ongoing_requests: int = 64  # requests one replica takes at once; its @serve.batch merges them


class GatewaySettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8000
    api_keys: list[str] = Field(default_factory=list)
    cache_ttl_s: float = 1800.0  # the original's 30-minute cache
    cache_max_mb: int = 256  # past this the oldest cache entries are dropped
    rate_limit_per_minute: int = 600  # /api/v1 and /mcp: per API key and per client address
    public_rate_limit_per_minute: int = 0  # showcase routes and pages, per client address; 0 = unlimited
    default_model: str = "baseline"
    default_timeframe: str = "1h"
    summary_cache_ttl_s: float = 60.0  # instruments, performance, job runs: no NOTIFY, so a shorter TTL
    http_max_age_s: int = 5  # Cache-Control max-age sent to browsers and CDNs
    http_stale_while_revalidate_s: int = 60
    home_timeframe: str = "1d"  # the home grid opens on daily forecasts: every instrument has daily candles
    # The cache is saved here every cache_snapshot_interval_s and at shutdown, and read back (as stale
    # entries) at start, so a gateway restarted while the database is down still serves what it had.
    # None = off; `candlecast serve-gateway` and `make run` default it to <data_dir>/gateway-cache.json.
    cache_snapshot_path: Path | None = None
    cache_snapshot_interval_s: float = 60.0
    http_stale_if_error_s: int = 86400
    history_candles: int = 120  # recent candles on the symbol page
    card_candles: int = 48  # closes before the fan on each home-page card
    replay_after_h: float = 96.0  # pages call a forecast a historical replay when its as_of is older than this
    max_history_candles: int = 2000  # cap of ?history= on /api/v1/predictions
    db_timeout_s: float = 3.0  # connect and statement timeout of the gateway's reads
    db_read_bound_s: float = 4.0  # a read or ping with no answer by then (a frozen database) counts as a failure
    db_retry_s: float = 1.0  # after a failed read, serve cached entries this long before trying the database
    notify_backoff_max_s: float = 5.0  # LISTEN reconnect backoff cap
    notify_ping_s: float = 5.0  # idle LISTEN connection is checked this often
    # MCP follows /api/v1 (docs/gateway.md, "MCP keys"): with keys configured, list_instruments and get_performance
    # need one (X-API-Key) and get_forecast (the showcase's data) does not; mcp_requires_key closes all of /mcp.
    mcp_requires_key: bool = False
    mcp_stream_timeout_s: float = 30.0  # a GET /mcp event stream (it carries nothing when stateless) ends after this
    mcp_max_streams: int = 16  # open GET /mcp streams per process; beyond it 503 with Retry-After
    # Reads (forecasts, instruments, scores) from this database instead of database_url (a read replica); the
    # LISTEN connection stays on the primary, where the inserts' NOTIFY is sent. None = the primary.
    read_database_url: str | None = None
    # Rate limits shared by every replica (token buckets in Redis, e.g. redis://127.0.0.1:6379/0); None, or Redis
    # unreachable, = each process limits on its own (never an error because of Redis).
    rate_limit_redis_url: str | None = None
    rate_limit_redis_prefix: str = "candlecast:ratelimit:"  # Redis key prefix of the shared buckets
    # Proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (addresses or networks, "*" for any); with
    # none (the default) the client address is the TCP peer, so a forged header cannot dodge the rate limits.
    forwarded_allow_ips: list[str] = Field(default_factory=list)
    # /metrics: "loopback" (only from a loopback peer), "key" (an API key in X-API-Key) or "open".
    metrics_access: Literal["loopback", "key", "open"] = "loopback"
    # Origins allowed to read answers cross-origin (CORS): GET/HEAD only, never with credentials (cookies);
    # [] sends no CORS headers at all (same-origin only).
    cors_allow_origins: list[str] = Field(default_factory=lambda: ["*"])
    # The track record every forecast answer carries (docs/gateway.md, "Track record"): the all-steps row of this
    # signal_performance window; fewer scored forecasts than track_record_min_scored say "too few scores", and a
    # Diebold-Mariano p-value below track_record_alpha makes the skill's sign a verdict.
    track_record_window: Literal["all", "trailing_30d"] = "trailing_30d"
    track_record_min_scored: int = Field(30, ge=1)
    track_record_alpha: float = Field(0.05, gt=0.0, lt=1.0)


class CalibrationSettings(BaseModel):
    """Conformal calibration of the served p10-p90 band (quantile tracking with a pooled integrator,
    docs/calibration.md), e.g. ``CANDLECAST_JOBS__CALIBRATION__GAMMA=0.1``."""

    alpha: float = Field(0.2, gt=0.0, lt=1.0)  # nominal miss rate of the p10-p90 band (80% two-sided)
    # integrator gain (step k's misses count gamma / k, in units of the score spread): how fast misses are pulled back
    gamma: float = Field(0.1, ge=0.0)
    window: int = Field(500, ge=1)  # most recent realised scores per step in the conformal quantile
    min_outcomes: int = Field(20, ge=1)  # fewer realised outcomes at a step: that step is served raw ...
    min_outcomes_per_h: int = Field(5, ge=0)  # ... or fewer than this many times h (step h's outcomes overlap)
    lookback: int = Field(650, ge=1)  # past forecasts of the (symbol, timeframe, model) read per slot
    halflife: float = Field(20.0, gt=0.0)  # candles; the EWMA volatility that scales the scores
    sides: bool = False  # track p10 and p90 each at alpha / 2 (measured worse on 2018: docs/calibration.md)
    memory: float | None = Field(None, gt=0.0)  # candles; the integrator's half-life (None: it never forgets)


class JobSettings(BaseModel):
    cron: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_CRON))
    # Horizons in candles: 120 hours (5 days) as in the original design; 30 days (six weeks of sessions, a month 24/7).
    # Measured in docs/context-and-horizon.md (bench/context_and_horizon.py).
    pred_len_1h: int = 120
    pred_len_1d: int = 30
    context_1h: int = 512
    context_1d: int = 512
    sample_count: int = 32
    request_series_per_call: int = 8
    concurrency: int = 2
    read_chunk_symbols: int = 256  # batch: candles are read this many symbols at a time, while requests run
    write_batch_rows: int = 256  # batch: most forecasts written per COPY (fewer when the requests are slower)
    http_timeout_s: float = 120.0
    http_retries: int = 3
    misfire_grace_s: int = 600
    performance_window_days: int = 30
    # Scoring reads the forecasts of its backlog (any age) this many at a time; each chunk commits on its own.
    score_chunk_predictions: int = 10_000
    http_backoff_s: float = 0.5  # first retry delay; doubles each retry
    # Fewer closed candles than this: the symbol is skipped, not failed. Chosen per timeframe by measurement
    # (docs/context-and-horizon.md): shorter contexts give too-narrow p10-p90 bands.
    min_context_1h: int = 128
    min_context_1d: int = 64
    min_context: int | None = None  # deprecated: one minimum for both timeframes, unless min_context_<tf> is set
    # Skip a symbol with no new candle since its previous slot (market closed): that forecast still stands.
    skip_unchanged: bool = True
    local: bool = False  # the scheduler runs batch models in-process instead of calling the inference service
    send_events: bool = True  # build event tensors for models that use them (kronos), when the encoder exists
    # Serve the calibrated band (p10/p90 and samples); the model's own band is kept in p10_raw/p90_raw either way.
    calibrate: bool = True
    calibration: CalibrationSettings = Field(default_factory=CalibrationSettings)

    def min_context_for(self, timeframe: str) -> int:
        """The fewest closed candles a symbol needs to be forecast on ``timeframe`` ('1h' or '1d')."""
        name = f"min_context_{timeframe}"
        if self.min_context is not None and name not in self.model_fields_set:
            return self.min_context
        return int(getattr(self, name))


class EventSettings(BaseModel):
    """Parameters of the 20-channel event tensor; each one is defined in docs/events.md."""

    surprise_window: int = 20  # surprises per event type in the rolling std
    surprise_min_history: int = 5  # fewer earlier surprises than this: z = 0
    surprise_clip: float = 3.0
    hawkish_step: float = 0.25  # a rate change of this size (percentage points) scores +-1
    fomc_period_days: float = 63.0  # cyclical period of days_to_fomc (longest regular gap ~58 days)
    cpi_period_days: float = 45.0  # cyclical period of days_to_cpi (regular gaps 25-36 days)
    release_carry_max_hours: float = 96.0  # a release while the market is closed goes to the next candle
    leader_max_gap_hours: float = 96.0  # longest gap a leader return or VIX level may span
    vix_window: int = 252  # VIX observations in the rolling z-score
    vix_min_history: int = 20
    fed_bank_codes: list[str] = Field(default_factory=lambda: ["FED", "FRB", "FOMC", "US", "USD"])


class FinetuneSettings(BaseModel):
    """Monthly LoRA fine-tuning of Kronos per asset class and its promotion gate (docs/finetune.md)."""

    timeframes: list[str] = Field(default_factory=lambda: ["1h", "1d"])  # candle series trained on
    lookback: int = 256  # candles of context per window; the window is normalised with their statistics
    horizon: int = 24  # candles after the lookback: predicted in training, forecast by the gate
    window_stride: int = 24  # candles between the starts of consecutive windows of one series
    max_candles_per_series: int = 20_000  # newest candles read per (symbol, timeframe)
    max_train_windows: int = 20_000  # more are thinned evenly over time
    max_validation_windows: int = 2_000
    validation_fraction: float = Field(0.2, gt=0.0, lt=1.0)  # newest part of the windows, by time
    min_train_windows: int = 16
    min_validation_windows: int = 4
    event_oversampling: int = Field(3, ge=1)  # windows with a release/decision/earnings event, per epoch
    epochs: int = Field(2, ge=1)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(2e-4, gt=0.0)
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    lora_rank: int = Field(8, ge=1)
    lora_alpha: float = 16.0
    lora_dropout: float = 0.05
    lora_targets: list[str] = Field(default_factory=lambda: ["q_proj", "v_proj"])
    loss_eval_windows: int = 512  # training windows whose loss is measured before and after training
    gate_windows: int = 64  # held-out windows forecast by candidate and incumbent
    gate_sample_count: int = 16  # sampled paths per gate window (CRPS of the close)
    seed: int = 0
    device: str = "cpu"
    # adapter folders and the promoted-adapters manifest (promoted.json); default: <data_dir>/adapters
    adapters_dir: Path | None = None


class GarchSettings(BaseModel):
    """The GARCH(1,1)-t forecaster (docs/garch.md), e.g. ``CANDLECAST_GARCH__WINDOW=750``."""

    window: int = Field(500, ge=10)  # trailing candles fitted per forecast (their window - 1 log returns)
    min_window: int = Field(100, ge=10)  # fewer candles: an InputError for that series
    mean: Literal["zero", "constant"] = "zero"  # zero: driftless, like the random walks it is compared with
    n_sim: int = Field(2000, ge=1)  # simulated paths behind the quantiles
    max_iter: int = Field(200, ge=1)  # optimiser iterations; a fit that needs more falls back (docs/garch.md)

    @model_validator(mode="after")
    def _min_within_window(self) -> GarchSettings:
        if self.min_window > self.window:
            raise ValueError(f"garch: min_window ({self.min_window}) must not exceed window ({self.window})")
        return self


class EnsembleSettings(BaseModel):
    """The CRPS-weighted ensemble (docs/jobs.md, "Ensemble"), e.g. ``CANDLECAST_ENSEMBLE__MIN_HISTORY=40``."""

    members: list[str] | None = None  # the models combined; None = every configured model (CANDLECAST_MODELS)
    min_members: int = Field(2, ge=2)  # fewer member forecasts of a slot: the symbol is skipped
    # Fewer forecasts scored on outcomes common to all members (realised before the slot): equal weights.
    min_history: int = Field(20, ge=1)
    # Forecasts made this many days before the slot count towards the trailing CRPS.
    lookback_days_1h: float = Field(14.0, gt=0)
    lookback_days_1d: float = Field(365.0, gt=0)
    # weight of a member ~ mean CRPS ** -power: 2 is the CRPS analogue of Bates-Granger inverse-MSE weights
    # (CRPS is in price units, like an absolute error); 0 = equal weights always.
    power: float = Field(2.0, ge=0.0)
    sample_count: int | None = Field(None, ge=1)  # paths of an ensemble forecast; None = jobs.sample_count

    def lookback_days(self, timeframe: str) -> float:
        return self.lookback_days_1h if timeframe == "1h" else self.lookback_days_1d


class StoreSettings(BaseModel):
    """History upkeep (docs/store.md): partitions and retention, e.g. ``CANDLECAST_STORE__KEEP_SAMPLES_DAYS=90``."""

    # Forecasts made more than this many days ago lose their sample paths (samples and per-path highs/lows);
    # quantiles, calibration, provenance and scores stay. None = keep samples for ever.
    keep_samples_days: float | None = Field(None, ge=0)
    prune_batch_rows: int = Field(2000, ge=1)  # forecasts per retention transaction
    partitions_ahead_months: int = Field(1, ge=0)  # monthly partitions created ahead of the current month


class Settings(BaseSettings):
    """Everything configurable in candlecast."""

    model_config = SettingsConfigDict(
        env_prefix="CANDLECAST_",
        env_nested_delimiter="__",
        extra="ignore",
    )

    # Any Postgres; unset = a private embedded PostgreSQL under data_dir (started by the CLI).
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("CANDLECAST_DATABASE_URL", "DATABASE_URL")
    )
    data_dir: Path = Path("var")
    sample_dir: Path = Path("data/sample")
    # Comma-separated model names to load in the inference service (see KNOWN_MODELS),
    # e.g. "kronos-small,baseline". A name may be given a source with CANDLECAST_MODEL_SOURCES.
    models: str = "baseline"
    model_sources: dict[str, ModelSpec] = Field(default_factory=dict)
    universe: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_UNIVERSE))
    # asset class -> trading calendar used to lay out forecast timestamps (see candlecast.models.calendars):
    # "24/7" never closes, "24/5" closes Fri 22:00 -> Sun 22:00 UTC, "XNYS" follows NYSE sessions.
    market_calendars: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_MARKET_CALENDARS))
    leaders: list[str] = Field(default_factory=lambda: list(LEADERS))
    inference: InferenceSettings = Field(default_factory=InferenceSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    jobs: JobSettings = Field(default_factory=JobSettings)
    events: EventSettings = Field(default_factory=EventSettings)
    finetune: FinetuneSettings = Field(default_factory=FinetuneSettings)
    garch: GarchSettings = Field(default_factory=GarchSettings)
    ensemble: EnsembleSettings = Field(default_factory=EnsembleSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    log_level: str = "INFO"

    @field_validator("database_url")
    @classmethod
    def _normalise_url(cls, value: str | None) -> str | None:
        """Accept the URL forms hosting providers hand out; always use the psycopg 3 driver."""
        if not value:
            return None
        for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix) :]
        return value

    def model_names(self) -> list[str]:
        return [name.strip() for name in self.models.split(",") if name.strip()]

    def model_spec(self, name: str) -> ModelSpec:
        """The source of a configured model: an explicit entry, a known published model, or an error."""
        if name in self.model_sources:
            return self.model_sources[name]
        if name in KNOWN_MODELS:
            return KNOWN_MODELS[name]
        raise KeyError(f"unknown model {name!r}; known: {sorted(KNOWN_MODELS)}")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[Any] = [init_settings, env_settings]
        toml_path = os.environ.get("CANDLECAST_CONFIG")
        if toml_path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once). Tests build their own ``Settings(...)`` instead."""
    return Settings()


def is_loopback(host: str) -> bool:
    """True for loopback addresses and ``localhost``; False for wildcards (``0.0.0.0``, ``::``) and other names.
    Both services' exposure rule: binding anywhere else needs a token or API keys."""
    if host.strip().lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # another host name: it may resolve to anything
