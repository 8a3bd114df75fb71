"""The shapes of the gateway's answers, as pydantic models: the OpenAPI schema (``/openapi.json``, ``/docs``) and
the MCP tools' output schemas are built from them. The payload builders (``payloads/``) produce plain dicts in
these shapes; the tests validate real answers against these models, so the two cannot drift apart.

Conventions every answer follows:

- timestamps are ISO 8601 in UTC with a ``Z`` suffix; a candle's timestamp (``target_timestamps``, candle ``ts``,
  ``first``/``last``) is the candle's **open** time: the 1h candle stamped 10:00Z covers 10:00-11:00 and its close
  is the price at 11:00Z;
- prices are rounded to the instrument's precision: six significant digits at the level of its last close, never
  fewer than two decimals;
- ``data_mode`` says whether the data is ``live`` or a historical ``replay`` (its ``data_as_of`` is more than
  ``gateway.replay_after_h`` hours, 96 by default, before the answer was read from the store); ``data_as_of`` is
  the market time the data reflects, so its age is the response's ``Date`` minus ``data_as_of`` (MCP answers
  carry it as ``data_age_s``);
- ``stale`` is true when the database could not confirm that the answer is still the newest (served from cache).
"""

from __future__ import annotations

from importlib import metadata
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "API_VERSION",
    "Candles",
    "ErrorBody",
    "Forecast",
    "ForecastWithAge",
    "Health",
    "Instruments",
    "InstrumentsWithAge",
    "Jobs",
    "Performance",
    "PathAnswer",
    "PathAnswerWithAge",
    "PerformanceWithAge",
    "PredictionDetail",
    "TrackRecord",
    "error_responses",
    "ok",
]


def _package_version() -> str:
    try:
        return metadata.version("candlecast")
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0+unknown"


API_VERSION = _package_version()

TIMESTAMP = "ISO 8601, UTC, with Z"
OPEN_TIME = TIMESTAMP + "; a candle's timestamp is its open time"
_TS: dict[str, Any] = {"format": "date-time"}


def _ts(description: str) -> Any:
    return Field(description=description, json_schema_extra=_TS)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(_Strict):
    """Every error answer (4xx, 5xx) has this shape."""

    detail: str = Field(description="What went wrong, in one line.")
    field: str | None = Field(None, description="422: the request field at fault (query or path parameter name).")
    available: list[Any] | None = Field(
        None,
        description="404: what exists instead: symbols, {model_name, timeframe} pairs of the symbol's forecasts, "
        "or model names.",
    )


class DataStatus(_Strict):
    data_mode: Literal["live", "replay"] | None = Field(
        description="'replay': the data is historical (its data_as_of was more than gateway.replay_after_h hours "
        "before the answer was read from the store); 'live' otherwise; null when the answer holds no data."
    )
    data_as_of: str | None = _ts("The market time the data reflects (newest forecast's as_of). " + TIMESTAMP)


class Label(_Strict):
    name: str | None = Field(description="What the series really is, e.g. 'S&P 500 index level (^GSPC), proxy "
                             "for SPY'.")  # fmt: skip
    quote_currency: str | None = Field(description="Currency prices are quoted in; null for index points.")


VERDICT_RULE = (
    "The verdict: 'too few scores' with fewer than min_scored scored forecasts (gateway.track_record_min_scored, "
    "30 by default) or no skill or p-value to judge by; 'edge' when crps_skill > 0 and dm_pvalue < alpha "
    "(gateway.track_record_alpha, 0.05): the model's CRPS is significantly lower than a random walk's; 'worse than "
    "random walk' when crps_skill < 0 and dm_pvalue < alpha; 'no edge' otherwise."
)


COVERAGE_INTERVAL = (
    "Lower bound of a 90% interval of coverage: coverage +- t sqrt(V / n) clipped to [0, 1], V the Newey-West "
    "long-run variance of each forecast's share of its scored steps in the band (horizon - 1 lags: forecasts that "
    "overlap share outcomes, so a year of daily 30-step forecasts measures coverage only to about +-0.1), t the "
    "Student t quantile with (forecasts / horizon - 1) degrees of freedom. A coverage whose interval holds the "
    "nominal 0.8 is consistent with a calibrated band. Null until the scored forecasts span more than one horizon."
)


class TrackRecord(_Strict):
    __doc__ = (
        "How the past forecasts of the same (symbol, timeframe, model) did: the all-steps row of signal_performance "
        "in the window (trailing_30d by default: forecasts made in the 30 days before the newest scored one, so a "
        "replay's window follows its data). " + VERDICT_RULE
    )

    window: Literal["all", "trailing_30d"] = Field(description="The signal_performance window it summarises.")
    scored_forecasts: int = Field(description="Forecasts with at least one scored step in the window.")
    scored_steps: int = Field(description="Scored forecast steps (a forecast has one per target candle).")
    coverage: float | None = Field(
        description="Share of realised closes inside the served p10-p90 band (nominal 0.8); null: none scored."
    )
    coverage_low: float | None = Field(description=COVERAGE_INTERVAL)
    coverage_high: float | None = Field(description="Upper bound of that interval.")
    coverage_raw: float | None = Field(description="The same for the model's own (uncalibrated) band.")
    nominal_coverage: float = Field(description="0.8: what a calibrated p10-p90 band holds.")
    crps_skill: float | None = Field(
        description="1 - CRPS / CRPS of a driftless log-normal random walk on the same steps: > 0 beats it."
    )
    dm_pvalue: float | None = Field(
        description="Two-sided Diebold-Mariano p-value of the CRPS difference to the random walk (HAC variance)."
    )
    verdict: Literal["edge", "no edge", "worse than random walk", "too few scores"] = Field(description=VERDICT_RULE)
    min_scored: int = Field(description="Scored forecasts needed for a verdict other than 'too few scores'.")
    alpha: float = Field(description="Significance level of the verdict.")
    first_as_of: str | None = _ts("Oldest forecast origin in the window. " + TIMESTAMP)
    last_as_of: str | None = _ts("Newest forecast origin in the window. " + TIMESTAMP)
    scored_through: str | None = _ts("The data time scoring had reached (in a replay, the replayed time). " + TIMESTAMP)


class StepRecord(_Strict):
    """The scores of one (symbol, timeframe, model) per horizon step in the window, as columns: one entry per step
    that has scores, in step order (a 1-step and a 120-step forecast are different products). Nulls where a value
    cannot be computed (no interval for one horizon or less, no skill without sample paths)."""

    step: list[int] = Field(description="Horizon step, 1-based.")
    scored_steps: list[int] = Field(description="Scored forecasts at that step.")
    coverage: list[float | None] = Field(description="Share of realised closes inside the served p10-p90 band.")
    coverage_low: list[float | None] = Field(description="Lower bound of its 90% interval (as the track record's).")
    coverage_high: list[float | None] = Field(description="Upper bound of that interval.")
    coverage_raw: list[float | None] = Field(description="The same for the model's own band.")
    crps_skill: list[float | None] = Field(description="1 - CRPS / CRPS of the random walk at that step.")
    dm_pvalue: list[float | None] = Field(description="Diebold-Mariano p-value of that skill.")
    crps_bp: list[float | None] = Field(description="Mean fair CRPS in basis points of the last close.")
    hit_rate: list[float | None] = Field(description="How often the p50 got the direction right.")


class Forecast(DataStatus, Label):
    """The newest stored forecast of one (symbol, model, timeframe), with its track record."""

    symbol: str
    model_name: str
    timeframe: Literal["1h", "1d"]
    generated_at: str = _ts("When the forecast was written to the store. " + TIMESTAMP)
    as_of: str = _ts("The market time the forecast was made as of: it saw only candles closed by then. " + TIMESTAMP)
    target_timestamps: list[str] = Field(description="The forecast candles, one per step. " + OPEN_TIME)
    p10: list[float | None] = Field(description="10th percentile of the close of each target candle.")
    p50: list[float | None] = Field(description="Median close of each target candle.")
    p90: list[float | None] = Field(description="90th percentile of the close of each target candle.")
    last_close: float | None = Field(description="Close of the last candle the forecast saw.")
    track_record: TrackRecord = Field(description="How this model's past forecasts of this series did.")
    provenance: dict[str, Any] | None = Field(
        description="Where the forecast came from (docs/provenance.md): model, revision, checkpoint_sha256, adapter, "
        "code_version, config and config_sha256, data_cutoff (the last candle used per input: the instrument, each "
        "leader, the calendar, rates), inputs (count and sha256 of the input candles), seed, and inputs_changed "
        "(true when an input candle was rewritten after the forecast was made). Null for forecasts stored before "
        "provenance was recorded."
    )
    stale: bool = Field(description="True when served from cache while the database was unreachable.")


class ForecastWithAge(Forecast):
    data_age_s: float | None = Field(description="Seconds between data_as_of and this answer.")


class Candles(_Strict):
    """Candles column by column (oldest first)."""

    ts: list[str] = Field(description=OPEN_TIME)
    open: list[float | None]
    high: list[float | None]
    low: list[float | None]
    close: list[float | None]
    volume: list[float | None]


class PredictionDetail(Forecast):
    model_version: str
    pred_len: int = Field(description="Number of forecast steps (the horizon).")
    event_context: dict[str, Any] | None = Field(description="What the model was given besides candles.")
    samples: list[list[float | None]] | None = Field(None, description="Sampled paths (samples=true).")
    history: Candles | None = Field(None, description="Candles closed by as_of (history=N).")


PATH_QUESTION_RULES = (
    "touch: P(the price reaches `level` within the steps, from `side`; judged on the sampled highs/lows where the "
    "model gives OHLC paths, on the closes otherwise, see `basis`); close: P(the close of the last step asked is "
    "above/below `level`); first: which of `level` (A, e.g. a stop) and `level_b` (B, e.g. a target) is reached "
    "first, each from the side it lies on from the last close (`probability` is A first; `outcomes` has a_first, "
    "b_first, same_step: both in one candle, order unknown, and neither); drawdown / runup: quantiles of each "
    "path's largest fall below its running peak / rise above its running low, as fractions (0.05 = 5%), starting "
    "from the last close."
)


class PathProbability(_Strict):
    probability: float = Field(description="Share of the sample paths where it happens.")
    standard_error: float = Field(
        description="Monte-Carlo (binomial) standard error: sqrt(p(1 - p)/paths), with p shrunk to (k + 1/2)/(paths "
        "+ 1) so that 0 or all paths still give a non-zero error."
    )


class PathQuantile(_Strict):
    quantile: float = Field(description="The quantile level, e.g. 0.9.")
    value: float = Field(description="The quantile, as a fraction (0.05 = 5%).")
    lower: float = Field(description="Lower end of its 95% distribution-free interval (order statistics).")
    upper: float = Field(description="Upper end of that interval.")


class PathAnswer(DataStatus, Label):
    __doc__ = "A question asked of a stored forecast's sample paths. " + PATH_QUESTION_RULES

    symbol: str
    model_name: str
    timeframe: Literal["1h", "1d"]
    forecast_id: int = Field(description="The forecast row the paths come from (ask again with forecast_id=).")
    generated_at: str = _ts("When the forecast was written to the store. " + TIMESTAMP)
    as_of: str = _ts("The market time the forecast was made as of. " + TIMESTAMP)
    last_close: float = Field(description="Close of the last candle the forecast saw (the paths start after it).")
    question: Literal["touch", "close", "first", "drawdown", "runup"] = Field(description=PATH_QUESTION_RULES)
    level: float | None = Field(description="The price asked about (level A for 'first'), in the quote currency.")
    level_b: float | None = Field(description="Level B of 'first'; null otherwise.")
    side: Literal["above", "below"] | None = Field(
        description="touch/close: from above or below; default: the side the level lies on from the last close."
    )
    steps: int = Field(description="Forecast candles the question covers (from `steps`, `by`, or the horizon).")
    horizon_steps: int = Field(description="Forecast candles in the forecast.")
    by: str = _ts("When the last candle covered closes (its open time + one timeframe). " + TIMESTAMP)
    basis: Literal["high/low", "close"] = Field(
        description="What a touch or drawdown was judged on: the sampled highs/lows (models with OHLC paths) or "
        "the closes (a level crossed inside a candle is then missed: a lower bound for touch)."
    )
    paths: int = Field(description="Number of sample paths the answer is estimated from.")
    max_standard_error: float | None = Field(description="The precision asked for; null: none.")
    probability: float | None = Field(description="touch, close, first (A first); null for drawdown/runup.")
    standard_error: float | None = Field(description="Monte-Carlo standard error of `probability`.")
    outcomes: dict[str, PathProbability] | None = Field(
        description="first: a_first, b_first, same_step, neither; null otherwise."
    )
    quantiles: list[PathQuantile] | None = Field(description="drawdown/runup: the 0.1, 0.5, 0.9 quantiles.")
    mean: float | None = Field(description="drawdown/runup: the mean over paths, as a fraction.")
    stale: bool = Field(description="True when the paths were served from cache while the database was unreachable.")


class PathAnswerWithAge(PathAnswer):
    data_age_s: float | None = Field(description="Seconds between data_as_of and this answer.")


class CandleRange(_Strict):
    rows: int
    first: str | None = _ts(OPEN_TIME)
    last: str | None = _ts(OPEN_TIME)


class ForecastSlot(_Strict):
    model_name: str
    timeframe: Literal["1h", "1d"]
    as_of: str = _ts(TIMESTAMP)
    generated_at: str = _ts(TIMESTAMP)


class Instrument(Label):
    symbol: str
    asset_class: str
    bar_kind: Literal["ohlc", "close"] = Field(description="'close' where the source publishes only a close.")
    active: bool
    candles: dict[str, CandleRange] = Field(description="Per timeframe ('1h', '1d').")
    forecasts: list[ForecastSlot] = Field(description="The newest forecast of each (model, timeframe).")


class Instruments(DataStatus):
    """Every instrument with its candle ranges and the forecasts it has."""

    instruments: list[Instrument]
    stale: bool


class InstrumentsWithAge(Instruments):
    data_age_s: float | None = Field(description="Seconds between data_as_of and this answer.")


class PerformanceRow(BaseModel):
    """One (symbol, timeframe, model) of the signal_performance table, all horizon steps together; more score
    columns may follow (coverage with its 90% interval coverage_low and coverage_high, coverage_raw, crps_skill,
    crps_bp, dm_pvalue, ...)."""

    model_config = ConfigDict(extra="allow")
    symbol: str
    name: str | None = Field(None, description="The instrument's label.")
    timeframe: str
    model_name: str
    verdict: Literal["edge", "no edge", "worse than random walk", "too few scores"] = Field(
        description="As in a forecast's track record. " + VERDICT_RULE
    )


class CalibrationRow(BaseModel):
    model_config = ConfigDict(extra="allow")
    model_name: str
    timeframe: str
    nominal: list[float] = Field(description="The forecast quantiles: 0.1, 0.5, 0.9.")
    observed: list[float | None] = Field(description="Share of realised closes below each of them.")
    n_pit: int = Field(description="Scored steps with a PIT (forecasts with sample paths, scored since PITs are kept).")
    pit_counts: list[int] = Field(
        description="PIT histogram: how many of those outcomes fell in each tenth of their sample distribution "
        "(the randomized PIT among the step's samples). Equal counts: calibrated; high at both ends: bands too "
        "narrow; high in the middle: too wide; sloped: biased."
    )


class Reliability(BaseModel):
    lower: list[float | None] = Field(description="Each bin's lower edge of the predicted probability.")
    upper: list[float | None]
    count: list[int] = Field(description="Questions in the bin.")
    mean_predicted: list[float | None] = Field(description="Their mean predicted touch probability (null: empty).")
    observed: list[float | None] = Field(description="The share of them whose level was touched.")


class PathScore(BaseModel):
    """How one model's touch probabilities scored: each forecast whose horizon passed was asked whether the
    levels k random-walk standard deviations from its last close (k in grid) were touched by the horizon."""

    model_config = ConfigDict(extra="allow")
    model_name: str
    timeframe: str
    forecasts: int
    questions: int = Field(description="Graded (forecast, level) questions.")
    grid: list[int] = Field(description="The levels asked about, in random-walk standard deviations over the horizon.")
    uses: dict[str, int] = Field(description="Questions judged on highs/lows ('ohlc') and on closes ('close').")
    brier: float | None = Field(description="Fair Brier score of the paths' probabilities (lower is better).")
    brier_rw: float | None = Field(description="The random walk's Brier score on the same questions.")
    skill: float | None = Field(description="1 - brier / brier_rw (above 0: better than the random walk).")
    dm_pvalue: float | None = Field(description="Diebold-Mariano p-value of the Brier difference.")
    verdict: Literal["edge", "no edge", "worse than random walk", "too few scores"]
    base_rate: float | None = Field(description="Share of the questions whose level was touched.")
    reliability: Reliability


class Period(_Strict):
    first_as_of: str | None = _ts(TIMESTAMP)
    last_as_of: str | None = _ts(TIMESTAMP)


class Performance(DataStatus):
    """How past forecasts scored."""

    symbol: str | None = Field(description="The symbol asked for; null for every symbol.")
    model_name: str | None = Field(description="The model asked for; null for every model.")
    timeframe: str | None = Field(description="The timeframe asked for; null for both.")
    window: str
    nominal_coverage: float = Field(description="0.8: the share of closes a calibrated p10-p90 band holds.")
    period: Period = Field(description="The evaluation period: the oldest and newest forecast origin of the rows.")
    rows: list[PerformanceRow]
    calibration: list[CalibrationRow] = Field(description="Over the scored steps of the same window.")
    path_scores: list[PathScore] = Field(
        description="Touch probabilities of the sample paths graded like forecasts (docs/paths.md), per model."
    )
    by_step: StepRecord | None = Field(
        description="Asked for one series (symbol, model_name and timeframe all given): its scores per horizon step "
        "in the window; null otherwise."
    )
    stale: bool


class PerformanceWithAge(Performance):
    data_age_s: float | None = Field(description="Seconds between data_as_of and this answer.")


class Jobs(DataStatus):
    """Recent job runs, the last run of each job, and how fresh candles and forecasts are."""

    model_config = ConfigDict(extra="allow")
    runs: list[dict[str, Any]]
    last_runs: dict[str, dict[str, Any]]
    freshness: dict[str, dict[str, Any]] = Field(description="Per timeframe. " + TIMESTAMP)
    stale: bool


class Health(BaseModel):
    """Database and LISTEN state, cache size, last job runs, newest forecast age per timeframe."""

    model_config = ConfigDict(extra="allow")
    status: Literal["ok", "degraded"]
    database: dict[str, Any]
    cache: dict[str, int]
    jobs: dict[str, Any] | None
    forecasts: dict[str, Any] | None
    checked_at: str = _ts(TIMESTAMP)


_ERRORS: dict[int, str] = {
    401: "No API key sent: put it in the X-API-Key header.",
    403: "A wrong API key, or no key is configured on this gateway (the detail says how to set one).",
    404: "An unknown symbol or model, or no such forecast: `available` lists what exists.",
    422: "A malformed or out-of-range parameter: `field` names it.",
    429: "Over the rate limit: the Retry-After header says in how many seconds to retry.",
    503: "The database is unreachable and this answer was never cached: retry (Retry-After: 1).",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for these error statuses, all in the one ``ErrorBody`` shape."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        out[status] = {"model": ErrorBody, "description": _ERRORS[status]}
        if status in (429, 503):
            out[status]["headers"] = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}}
    return out


def ok(model: type[BaseModel], description: str) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` entry of a 200 whose body is ``model`` (routes answer pre-serialised JSON)."""
    return {200: {"model": model, "description": description}}
