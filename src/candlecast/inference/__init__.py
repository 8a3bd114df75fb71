"""The inference service: the only place models run (``candlecast serve-inference``, port 8200).

``create_app(settings)`` builds the FastAPI app (routes, micro-batching, auth, metrics); ``serve(settings)``
runs it with uvicorn; ``InferenceClient`` calls it over HTTP. Request/response bodies are in ``schemas``.
"""

from candlecast.inference.app import create_app, serve
from candlecast.inference.client import InferenceClient

__all__ = ["InferenceClient", "create_app", "serve"]
