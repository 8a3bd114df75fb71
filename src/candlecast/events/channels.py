"""Names and indices of the 20 event channels (the table in docs/events.md and docs/design.md)."""

from __future__ import annotations

__all__ = [
    "BTC_LOG_RETURN",
    "CHANNEL_NAMES",
    "CPI_SURPRISE_Z",
    "DAYS_TO_CPI_COS",
    "DAYS_TO_CPI_SIN",
    "DAYS_TO_FOMC_COS",
    "DAYS_TO_FOMC_SIN",
    "DXY_LOG_RETURN",
    "FLAG_CHANNELS",
    "FOMC_HAWKISH_SCORE",
    "IS_CPI",
    "IS_EARNINGS",
    "IS_FOMC",
    "IS_GDP",
    "IS_NFP",
    "IS_PCE",
    "IS_RATE_DECISION",
    "LEADER_RETURN_CHANNELS",
    "NFP_SURPRISE_Z",
    "N_CHANNELS",
    "RESERVED_18",
    "RESERVED_19",
    "SPY_LOG_RETURN",
    "SURPRISE_CHANNELS",
    "VIX_LEADER",
    "VIX_LEVEL_Z",
]

N_CHANNELS = 20

IS_FOMC = 0
IS_CPI = 1
IS_NFP = 2
IS_GDP = 3
IS_PCE = 4
CPI_SURPRISE_Z = 5
FOMC_HAWKISH_SCORE = 6
NFP_SURPRISE_Z = 7
IS_EARNINGS = 8
IS_RATE_DECISION = 9
DAYS_TO_FOMC_SIN = 10
DAYS_TO_FOMC_COS = 11
DAYS_TO_CPI_SIN = 12
DAYS_TO_CPI_COS = 13
BTC_LOG_RETURN = 14
SPY_LOG_RETURN = 15
DXY_LOG_RETURN = 16
VIX_LEVEL_Z = 17
RESERVED_18 = 18
RESERVED_19 = 19

CHANNEL_NAMES: tuple[str, ...] = (
    "is_fomc",
    "is_cpi",
    "is_nfp",
    "is_gdp",
    "is_pce",
    "cpi_surprise_z",
    "fomc_hawkish_score",
    "nfp_surprise_z",
    "is_earnings",
    "is_rate_decision",
    "days_to_fomc_sin",
    "days_to_fomc_cos",
    "days_to_cpi_sin",
    "days_to_cpi_cos",
    "btc_log_return",
    "spy_log_return",
    "dxy_log_return",
    "vix_level_z",
    "reserved_18",
    "reserved_19",
)

# Calendar event_type -> the 0/1 channel set at its release candle.
FLAG_CHANNELS: dict[str, int] = {
    "fomc": IS_FOMC,
    "cpi": IS_CPI,
    "nfp": IS_NFP,
    "gdp": IS_GDP,
    "pce": IS_PCE,
    "earnings": IS_EARNINGS,
    "rate_decision": IS_RATE_DECISION,
}
# Calendar event_type -> the channel holding its surprise z-score.
SURPRISE_CHANNELS: dict[str, int] = {"cpi": CPI_SURPRISE_Z, "nfp": NFP_SURPRISE_Z}
# Leader symbol -> the channel holding its prior-candle log return (same symbols as config.LEADERS).
LEADER_RETURN_CHANNELS: dict[str, int] = {"BTCUSDT": BTC_LOG_RETURN, "SPY": SPY_LOG_RETURN, "DXY": DXY_LOG_RETURN}
VIX_LEADER = "VIX"
