"""The pipeline jobs: batch prediction, scoring, the scheduler and its cron table, walk-forward replay, and
the ``job_runs`` record every run leaves.

- ``batch.run_batch``: forecasts for every active instrument, written as one slot per (symbol, timeframe,
  model, as_of);
- ``scoring.run_scoring``: scores of every forecast step whose candle has closed, then the performance view;
- ``scheduler``: the cron table (APScheduler), one advisory lock per job, ``jobs list`` / ``jobs run``;
- ``replay.run_replay``: batch then score at each historical slot, with no look-ahead;
- ``cli``: the Typer commands for all of the above.
"""
