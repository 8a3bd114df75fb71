"""The shipped sample data (data/sample/) parses, obeys the candle rules, and matches its manifest.

No network and no database: these read the committed files with the same reader and validator
that ``candlecast ingest`` uses, plus direct checks of each invariant.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from candlecast.config import DEFAULT_UNIVERSE
from candlecast.ingest.calendar import read_calendar_file
from candlecast.ingest.candles import read_candle_file, validate_candles
from candlecast.ingest.sample import SampleFile, load_sample_calendar, load_sample_manifest

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "data" / "sample"
MANIFEST = load_sample_manifest(SAMPLE_DIR)
ENTRIES = {(e["symbol"], e["timeframe"]): e for e in json.loads((SAMPLE_DIR / "manifest.json").read_text())["candles"]}
CALENDAR_PATH = SAMPLE_DIR / "calendar" / "economic_calendar.csv"
STEP = {"1h": pd.Timedelta(hours=1), "1d": pd.Timedelta(days=1)}
NEW_YORK = ZoneInfo("America/New_York")


def _id(item: SampleFile) -> str:
    return f"{item.symbol}_{item.timeframe}"


@pytest.fixture(scope="module")
def calendar() -> pd.DataFrame:
    frame = pd.read_csv(CALENDAR_PATH, keep_default_na=False, na_values=[""])
    frame["scheduled_at"] = pd.to_datetime(frame["scheduled_at"], utc=True)
    return frame


# -- candles ------------------------------------------------------------------------------------------


def test_manifest_lists_every_candle_file_once_and_only_universe_symbols() -> None:
    on_disk = sorted(p.name for p in (SAMPLE_DIR / "candles").glob("*.parquet"))
    assert sorted(item.path.name for item in MANIFEST) == on_disk
    for item in MANIFEST:
        assert item.symbol in DEFAULT_UNIVERSE, item.symbol
        assert item.asset_class == DEFAULT_UNIVERSE[item.symbol], item.symbol
        assert item.path.name == f"{item.symbol}_{item.timeframe}.parquet"
        assert "==" in item.source and item.licence


def test_the_series_the_issue_asks_for_are_shipped() -> None:
    shipped = {(i.symbol, i.timeframe): i for i in MANIFEST}
    for key in [("BTCUSDT", "1h"), ("EURUSD", "1h"), ("SPY", "1d"), ("QQQ", "1d"), ("VIX", "1d"), ("ETHUSDT", "1d"),
                ("BTCUSDT", "1d"), ("DXY", "1d")]:  # fmt: skip
        assert key in shipped, key
    assert shipped[("VIX", "1d")].bar_kind == "close"
    assert shipped[("DXY", "1d")].bar_kind == "close"
    btc = pd.read_parquet(shipped[("BTCUSDT", "1h")].path)
    assert len(btc) == 20_111
    assert btc["ts"].iloc[0] == pd.Timestamp("2017-07-01 11:00", tz="UTC")
    assert btc["ts"].iloc[-1] == pd.Timestamp("2019-10-17 09:00", tz="UTC")
    eurusd = pd.read_parquet(shipped[("EURUSD", "1h")].path)
    assert len(eurusd) == 6_225 and (eurusd["ts"].dt.year == 2017).all()


@pytest.mark.parametrize("item", MANIFEST, ids=_id)
def test_candle_file_has_the_canonical_schema(item: SampleFile) -> None:
    frame = pd.read_parquet(item.path)
    assert list(frame.columns) == ["ts", "open", "high", "low", "close", "volume", "amount"]
    assert isinstance(frame["ts"].dtype, pd.DatetimeTZDtype) and str(frame["ts"].dt.tz) == "UTC"
    for column in ("open", "high", "low", "close", "volume", "amount"):
        assert frame[column].dtype == np.float64, column


@pytest.mark.parametrize("item", MANIFEST, ids=_id)
def test_candle_file_obeys_the_candle_invariants(item: SampleFile) -> None:
    frame = pd.read_parquet(item.path)
    ts = frame["ts"]
    assert ts.is_unique and ts.is_monotonic_increasing
    assert (ts == ts.dt.floor(STEP[item.timeframe])).all(), "timestamps off the timeframe grid"
    numbers = frame[["open", "high", "low", "close", "volume", "amount"]].to_numpy()
    assert not np.isinf(numbers).any()
    assert frame["close"].notna().all()
    ohlc = frame[["open", "high", "low"]]
    if item.bar_kind == "close":
        assert ohlc.isna().all().all(), "close-only file must not carry invented open/high/low"
    else:
        assert ohlc.notna().all().all()
        assert (frame["high"] >= frame["low"]).all()
        assert frame["open"].between(frame["low"], frame["high"]).all()
        assert frame["close"].between(frame["low"], frame["high"]).all()
    assert not (frame["volume"] < 0).any() and not (frame["amount"] < 0).any()


@pytest.mark.parametrize("item", MANIFEST, ids=_id)
def test_candle_file_passes_the_ingest_validator_unchanged(item: SampleFile) -> None:
    frame = read_candle_file(item.path)
    valid, errors = validate_candles(frame, item.timeframe)
    assert errors == []
    assert len(valid) == len(frame)


@pytest.mark.parametrize("item", MANIFEST, ids=_id)
def test_candle_file_matches_its_manifest_entry(item: SampleFile) -> None:
    frame = pd.read_parquet(item.path)
    entry = ENTRIES[(item.symbol, item.timeframe)]
    assert item.rows == entry["rows"] == len(frame)
    assert pd.Timestamp(entry["start"]) == frame["ts"].iloc[0]
    assert pd.Timestamp(entry["end"]) == frame["ts"].iloc[-1]


def test_sources_md_names_every_file_and_says_it_is_a_replay() -> None:
    text = (SAMPLE_DIR / "SOURCES.md").read_text()
    assert "historical" in text and "replay" in text
    for item in MANIFEST:
        assert f"candles/{item.path.name}" in text
        assert item.source in text


def test_sample_folder_stays_small() -> None:
    total = sum(p.stat().st_size for p in SAMPLE_DIR.rglob("*") if p.is_file())
    assert total < 6_000_000


# -- manifest reader ----------------------------------------------------------------------------------


def _write_manifest(folder: Path, entry: dict[str, object]) -> None:
    (folder / "candles").mkdir()
    (folder / "candles" / "X_1d.parquet").write_bytes(b"")
    (folder / "manifest.json").write_text(json.dumps({"candles": [entry]}))


GOOD_ENTRY = {"symbol": "SPY", "timeframe": "1d", "file": "candles/X_1d.parquet", "asset_class": "equity",
              "source": "arch==8.0.0", "bar_kind": "ohlc"}  # fmt: skip


def test_manifest_reader_returns_paths_inside_the_sample_dir(tmp_path: Path) -> None:
    _write_manifest(tmp_path, GOOD_ENTRY)
    [item] = load_sample_manifest(tmp_path)
    assert item.path == tmp_path / "candles" / "X_1d.parquet"
    assert (item.symbol, item.timeframe, item.bar_kind) == ("SPY", "1d", "ohlc")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"timeframe": "4h"}, "timeframe"),
        ({"bar_kind": "ohlcv"}, "bar_kind"),
        ({"asset_class": "bond"}, "asset_class"),
        ({"symbol": ""}, "symbol"),
        ({"source": None}, "source"),
    ],  # fmt: skip
)
def test_manifest_reader_names_the_bad_field(tmp_path: Path, change: dict[str, object], field: str) -> None:
    _write_manifest(tmp_path, {**GOOD_ENTRY, **change})
    with pytest.raises(ValueError, match=rf"candles\[0\].*'{field}'"):
        load_sample_manifest(tmp_path)


def test_manifest_reader_refuses_a_listed_file_that_is_missing(tmp_path: Path) -> None:
    _write_manifest(tmp_path, {**GOOD_ENTRY, "file": "candles/absent.parquet"})
    with pytest.raises(FileNotFoundError, match="absent.parquet"):
        load_sample_manifest(tmp_path)


def test_manifest_reader_says_how_to_build_a_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="build_sample_data.py"):
        load_sample_manifest(tmp_path)


# -- calendar -----------------------------------------------------------------------------------------


def test_calendar_is_listed_in_the_manifest_and_passes_the_ingest_reader() -> None:
    assert load_sample_calendar(SAMPLE_DIR) == [CALENDAR_PATH]
    valid, errors = read_calendar_file(CALENDAR_PATH)
    assert errors == []
    assert len(valid) == len(pd.read_csv(CALENDAR_PATH))


def test_fomc_has_eight_meetings_from_the_packages_every_year_1994_to_2027(calendar: pd.DataFrame) -> None:
    fomc = calendar[calendar["event_type"] == "fomc"]
    meetings = fomc[fomc["source"] != "hand-added"]  # 2020-03-15 replaced the scheduled March meeting
    per_year = meetings["scheduled_at"].dt.year.value_counts()
    assert all(per_year[year] == 8 for year in range(1994, 2028)), per_year.sort_index().to_dict()
    assert meetings["scheduled_at"].max() == pd.Timestamp("2028-01-26 19:00", tz="UTC")
    unscheduled = fomc["title"].str.contains("unscheduled")
    assert (fomc.loc[unscheduled, "status"] == "unscheduled").all()
    assert (fomc.loc[~unscheduled, "status"] == "confirmed").all()


def test_fomc_includes_the_hand_added_emergency_moves(calendar: pd.DataFrame) -> None:
    fomc = calendar[calendar["event_type"] == "fomc"].set_index("scheduled_at")
    for moment in ("2008-01-22 13:30", "2020-03-03 15:00", "2020-03-15 21:00"):  # 08:30 EST, 10:00 / 17:00 EDT
        assert "unscheduled" in fomc.loc[pd.Timestamp(moment, tz="UTC"), "title"]


def test_fomc_statement_times_follow_daylight_saving(calendar: pd.DataFrame) -> None:
    fomc = set(calendar.loc[calendar["event_type"] == "fomc", "scheduled_at"])
    assert pd.Timestamp("2024-12-18 19:00", tz="UTC") in fomc  # 14:00 EST
    assert pd.Timestamp("2019-06-19 18:00", tz="UTC") in fomc  # 14:00 EDT
    assert pd.Timestamp("2008-12-16 19:15", tz="UTC") in fomc  # 14:15 EST before 2013


def test_macro_releases_are_estimated_at_0830_new_york(calendar: pd.DataFrame) -> None:
    macro = calendar[calendar["event_type"].isin(["cpi", "nfp", "gdp", "pce"])]
    assert set(macro["event_type"]) == {"cpi", "nfp", "gdp", "pce"}
    assert (macro["status"] == "estimated").all()
    local = macro["scheduled_at"].dt.tz_convert(NEW_YORK)
    assert ((local.dt.hour == 8) & (local.dt.minute == 30)).all()
    assert macro["scheduled_at"].dt.year.between(2010, 2026).all()
    assert (local.dt.dayofweek < 5).all()


def test_nfp_rule_reproduces_real_release_days(calendar: pd.DataFrame) -> None:
    nfp = calendar[calendar["event_type"] == "nfp"]
    days = set(nfp["scheduled_at"].dt.tz_convert(NEW_YORK).dt.strftime("%Y-%m-%d"))
    known = {
        "2010-01-08",
        "2020-01-10",
        "2021-01-08",
        "2024-01-05",
        "2024-02-02",
        "2024-03-08",
        "2024-07-05",
        "2024-09-06",
        "2024-11-01",
        "2025-01-10",
        "2025-07-03",
    }
    assert known <= days
    assert "2026-12-31" not in days  # December's report never comes out on 31 December


def test_forecasts_are_never_invented_and_actuals_are_labelled_revised(calendar: pd.DataFrame) -> None:
    assert calendar["forecast"].isna().all()
    with_actual = calendar[calendar["actual"].notna()]
    assert set(with_actual["event_type"]) == {"cpi", "nfp"}
    assert (with_actual["actual_vintage"] == "revised").all()
    assert calendar.loc[calendar["actual"].isna(), "actual_vintage"].isna().all()
    # real values where shipped series cover the period: core CPI to 2018-11, payrolls to 2015-12
    nfp = with_actual[with_actual["event_type"] == "nfp"]
    assert nfp["period"].max() == "2015-12"
    assert with_actual.loc[with_actual["event_type"] == "cpi", "period"].max() == "2018-11"


def test_every_symbol_has_one_label_and_proxies_say_what_they_really_are() -> None:
    labels: dict[str, set[tuple[str | None, str | None]]] = {}
    for item in MANIFEST:
        assert item.name, item.symbol
        labels.setdefault(item.symbol, set()).add((item.name, item.quote_currency))
    assert all(len(found) == 1 for found in labels.values()), labels  # hourly and daily files agree
    assert labels["SPY"] == {("S&P 500 index level (^GSPC), proxy for SPY", "USD")}
    assert labels["QQQ"] == {("Nasdaq Composite index level (^IXIC), proxy for QQQ", "USD")}
    assert labels["USDJPY"] == {("US dollar / Japanese yen", "JPY")}
    assert {ccy for ((_, ccy),) in labels.values()} <= {"USD", "JPY", "CAD", None}


def test_loading_the_sample_labels_its_instruments_and_keeps_their_other_columns(engine: Any) -> None:
    from candlecast.ingest.candles import ingest_candles
    from candlecast.ingest.sample import label_sample_instruments
    from candlecast.store.candles import get_instruments

    spy = next(item for item in MANIFEST if item.symbol == "SPY")
    ingest_candles(engine, spy.path, spy.symbol, spy.timeframe, spy.asset_class, source=spy.source)
    assert label_sample_instruments(engine, MANIFEST) == 1  # only SPY is stored
    [stored] = get_instruments(engine, ["SPY"])
    assert (stored.name, stored.quote_currency) == (spy.name, "USD")
    assert (stored.asset_class, stored.source, stored.bar_kind) == ("equity", spy.source, "ohlc")
