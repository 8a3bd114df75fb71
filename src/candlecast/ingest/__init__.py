"""Ingest: loading candles and calendar events from files and market-data connectors, with validation."""
