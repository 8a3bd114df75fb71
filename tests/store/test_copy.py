import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from candlecast.store._copy import binary_copy, copy_row_dtype, decode_binary_copy


def test_binary_copy_round_trips_nulls_texts_of_several_widths_and_timestamps(engine: Engine) -> None:
    ts = pd.Series(pd.date_range("1999-12-31 23:00", periods=4, freq="h", tz="UTC"))
    stream = binary_copy([
        ("name", "text", ["a", "bcd", "", "bcd"]),
        ("at", "timestamptz", ts),
        ("x", ">f8", np.array([1.5, np.nan, -2.0, np.nan])),
        ("n", ">i8", np.array([1, 2, 3, 4])),
        ("ok", "?", np.array([True, False, True, True])),
    ])  # fmt: skip
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TEMP TABLE t (name text, at timestamptz, x float8, n int8, ok bool)"))
        with conn.connection.driver_connection.cursor() as cur:
            with cur.copy("COPY t FROM STDIN (FORMAT binary)") as copy:
                copy.write(stream)
        rows = conn.execute(sa.text("SELECT name, at, x, n, ok FROM t ORDER BY n")).all()
    assert [r.name for r in rows] == ["a", "bcd", "", "bcd"]
    assert [r.at for r in rows] == [t.to_pydatetime() for t in ts]
    assert [r.x for r in rows] == [1.5, None, -2.0, None]
    assert [r.ok for r in rows] == [True, False, True, True]


def test_fixed_width_stream_decodes_back_to_the_same_values() -> None:
    fields = (("id", ">i8"), ("v", ">f8"))
    stream = binary_copy([("id", ">i8", np.arange(3)), ("v", ">f8", np.array([0.5, 1.5, 2.5]))])
    rows = decode_binary_copy(stream, fields)
    assert rows.dtype == copy_row_dtype(fields)
    assert rows["id"].tolist() == [0, 1, 2] and rows["v"].tolist() == [0.5, 1.5, 2.5]


def test_columns_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="has 2 values, expected 3"):
        binary_copy([("a", ">i8", np.arange(3)), ("b", ">i8", np.arange(2))])
