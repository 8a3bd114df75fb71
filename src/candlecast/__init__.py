"""candlecast: cache-first probabilistic forecasts for market candles."""
