import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from candlecast.ingest.candles import IngestError, ingest_candles, read_candle_file, resample_daily, validate_candles


def good_rows(n: int = 6) -> pd.DataFrame:
    ts = pd.date_range("2021-03-01", periods=n, freq="h")  # naive: taken as UTC
    close = 100 + np.arange(n, dtype=float)
    return pd.DataFrame({"Date": ts.strftime("%Y-%m-%d %H:%M"), "Open": close, "High": close + 2,
                         "Low": close - 2, "Close": close + 1, "Volume": 5.0})  # fmt: skip


def test_reads_common_column_variants_and_naive_times_as_utc(tmp_path: Path) -> None:
    path = tmp_path / "candles.csv"
    good_rows().to_csv(path, index=False)
    frame = read_candle_file(path)
    assert list(frame.columns) == ["ts", "open", "high", "low", "close", "volume", "amount"]
    assert str(frame["ts"].dt.tz) == "UTC" and frame["ts"].iloc[0] == pd.Timestamp("2021-03-01", tz="UTC")
    assert frame["amount"].isna().all()


def test_reads_parquet_with_epoch_milliseconds_and_a_timezone_option(tmp_path: Path) -> None:
    rows = good_rows(3)
    ms = pd.to_datetime(rows["Date"]).dt.tz_localize("UTC").astype("int64") // 1_000_000
    path = tmp_path / "c.parquet"
    rows.assign(open_time=ms).drop(columns="Date").to_parquet(path)
    assert read_candle_file(path)["ts"].iloc[1] == pd.Timestamp("2021-03-01 01:00", tz="UTC")
    csv = tmp_path / "ny.csv"
    good_rows(1).to_csv(csv, index=False)
    assert read_candle_file(csv, timezone="America/New_York")["ts"].iloc[0].hour == 5  # 00:00 EST = 05:00 UTC


def test_validation_names_every_bad_row_and_its_reason(tmp_path: Path) -> None:
    rows = good_rows(10)
    rows.loc[1, "High"] = rows.loc[1, "Low"] - 1  # row 2: high below low
    rows.loc[3, "Close"] = np.nan  # row 4
    rows.loc[4, "Volume"] = -3  # row 5
    rows.loc[5, "Date"] = "2021-03-01 05:30"  # row 6: off the hourly grid
    rows.loc[6, "Open"] = np.inf  # row 7
    extra = rows.iloc[[8]].assign(Close=rows.loc[8, "Close"] + 0.5)  # row 11 duplicates row 9's time
    path = tmp_path / "bad.csv"
    pd.concat([rows, extra]).to_csv(path, index=False)
    valid, errors = validate_candles(read_candle_file(path), "1h")
    reasons = {e.row: e.reason for e in errors}
    assert sorted(reasons) == [2, 4, 5, 6, 7, 9, 11]
    assert "high below low" in reasons[2]
    assert "close missing" in reasons[4]
    assert "negative volume" in reasons[5]
    assert "grid" in reasons[6]
    assert "infinite" in reasons[7]
    assert "duplicate timestamp" in reasons[9] and "duplicate timestamp" in reasons[11]
    assert len(valid) == 4


def test_exact_duplicate_rows_collapse_silently(tmp_path: Path) -> None:
    rows = good_rows(3)
    path = tmp_path / "dup.csv"
    pd.concat([rows, rows.iloc[[1]]]).to_csv(path, index=False)
    valid, errors = validate_candles(read_candle_file(path), "1h")
    assert errors == [] and len(valid) == 3


def test_refused_file_writes_nothing_and_skip_invalid_writes_the_rest(engine: Engine, tmp_path: Path) -> None:
    rows = good_rows(5)
    rows.loc[2, "Low"] = rows.loc[2, "Close"] + 1
    path = tmp_path / "bad.csv"
    rows.to_csv(path, index=False)
    with pytest.raises(IngestError, match="row 3"):
        ingest_candles(engine, path, "BTCUSDT", "1h", "crypto")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM instruments")).scalar() == 0
    result = ingest_candles(engine, path, "BTCUSDT", "1h", "crypto", skip_invalid=True)
    assert result.written == 4 and [e.row for e in result.skipped] == [3]


def test_cli_exits_non_zero_naming_bad_rows_and_leaves_database_unchanged(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    good = tmp_path / "good.csv"
    good_rows(4).to_csv(good, index=False)
    bad_rows = good_rows(8)
    bad_rows.loc[[1, 6], "Volume"] = -1
    bad = tmp_path / "bad.csv"
    bad_rows.to_csv(bad, index=False)
    env = {**os.environ, "CANDLECAST_DATABASE_URL": db_url}
    cli = [sys.executable, "-m", "candlecast.cli", "ingest", "candles", "--symbol", "BTCUSDT", "--timeframe", "1h"]
    ok = subprocess.run([*cli, str(good)], env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    with engine.connect() as conn:
        before = conn.execute(sa.text("SELECT ts, close FROM ohlcv_1h ORDER BY ts")).all()
    refused = subprocess.run([*cli, str(bad)], env=env, capture_output=True, text=True)
    assert refused.returncode == 1
    assert "bad.csv" in refused.stderr and "row 2: negative volume" in refused.stderr
    assert "row 7: negative volume" in refused.stderr
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT ts, close FROM ohlcv_1h ORDER BY ts")).all() == before


def test_cli_refuses_a_different_asset_class_for_a_stored_symbol_unless_told_to_update(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    good = tmp_path / "good.csv"
    good_rows(4).to_csv(good, index=False)
    env = {**os.environ, "CANDLECAST_DATABASE_URL": db_url}
    cli = [sys.executable, "-m", "candlecast.cli", "ingest", "candles", str(good), "-s", "ACME", "-t", "1h"]

    def stored_class() -> str:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT asset_class FROM instruments WHERE symbol = 'ACME'")).scalar_one()

    assert subprocess.run([*cli, "--asset-class", "crypto"], env=env, capture_output=True).returncode == 0
    again = subprocess.run(cli, env=env, capture_output=True, text=True)  # no class given: the stored one is kept
    assert again.returncode == 0, again.stderr
    refused = subprocess.run([*cli, "--asset-class", "equity"], env=env, capture_output=True, text=True)
    assert refused.returncode == 1 and "'crypto', not 'equity'" in refused.stderr
    assert "--update-asset-class" in refused.stderr and stored_class() == "crypto"
    update = [*cli, "--asset-class", "equity", "--update-asset-class"]
    assert subprocess.run(update, env=env, capture_output=True).returncode == 0
    assert stored_class() == "equity"


def test_resampling_hourly_to_daily_keeps_ohlc_semantics() -> None:
    ts = pd.date_range("2021-03-01", periods=48, freq="h", tz="UTC")
    close = np.arange(48, dtype=float) + 10
    hourly = pd.DataFrame({"ts": ts, "open": close - 0.5, "high": close + 1, "low": close - 1, "close": close,
                           "volume": 1.0, "amount": np.nan})  # fmt: skip
    daily = resample_daily(hourly)
    assert len(daily) == 2
    first = daily.iloc[0]
    assert (first.open, first.high, first.low, first.close, first.volume) == (9.5, 34.0, 9.0, 33.0, 24.0)
    assert np.isnan(first.amount)
