"""HTTP routes as module-level routers (the pages have theirs in ``candlecast.gateway.pages``):

- ``showcase``: the public ``/showcase/ml-prediction/{symbol}``;
- ``api``: the keyed ``/api/v1`` reads;
- ``operations``: ``/health`` and ``/metrics``;
- ``deps``: the typed dependencies they share (``DataDep``, ``MetricsDep``, ``SettingsDep``, the API-key guard),
  all taken from ``request.app.state`` where ``create_app`` put them.

Errors are raised (``candlecast.errors``) and answered by the app's one exception handler.
"""
