"""The inference service: the only place models run (``candlecast serve-inference``, port 8200).

- ``app``: the FastAPI app (``create_app``, ``serve``): routes, micro-batching (``batching``), auth, metrics;
- ``schemas``: request and response bodies;
- ``client``: ``InferenceClient``, a typed HTTP client of the service;
- ``transports``: where the batch job gets forecasts, over HTTP or in-process, behind one protocol.

This package's ``__init__`` imports nothing, so ``import candlecast.inference.client`` loads no server code.
"""
