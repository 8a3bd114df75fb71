"""Promotion: how a promoted adapter reaches the model server, which never reads the database.

``model_adapters`` is the record. After a promotion the job rebuilds the manifest (``promoted.json`` in the
adapters directory, see ``candlecast.models.finetune.manifest``) from every promoted row and replaces it
atomically, under an advisory lock so two promotions never write it out of order. The row is always
written first: if the manifest then cannot be written, the promotion is recorded but not published, and
``ManifestNotWritten`` says so (the next publication, ``publish_promoted``, includes it).

``tell_inference_service`` then sends the manifest to the running service (``POST /admin/reload-adapters``),
which loads it at once; a service that is not reachable reads the file at its next start.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from candlecast.config import Settings
from candlecast.errors import UnavailableError
from candlecast.models.finetune.manifest import AdapterManifest, PromotedAdapter, manifest_path, write_manifest
from candlecast.store.adapters import AdapterRecord, all_promoted_adapters, manifest_lock, promote_adapter

__all__ = [
    "ManifestNotWritten",
    "manifest_from_records",
    "promote",
    "publish_promoted",
    "tell_inference_service",
]

log = logging.getLogger(__name__)


class ManifestNotWritten(UnavailableError):
    """The promotion is recorded in ``model_adapters`` but the manifest could not be written, so the model
    server does not know about it."""

    def __init__(self, path: Path, cause: Exception, adapter: AdapterRecord | None = None) -> None:
        what = (
            f"adapter #{adapter.id} ({adapter.base_model}, {adapter.asset_class}) is promoted in model_adapters, but"
            if adapter is not None
            else "the promoted adapters of model_adapters are not published:"
        )
        super().__init__(
            f"{what} the adapters manifest {path} could not be written ({type(cause).__name__}: {cause}). "
            "The inference service keeps serving the previous adapters. Make the adapters directory writable, "
            "then publish with `candlecast finetune --publish-only`."
        )
        self.path = path


def manifest_from_records(records: Iterable[AdapterRecord]) -> AdapterManifest:
    """The manifest listing ``records`` (promoted rows), by base model and asset class."""
    models: dict[str, dict[str, PromotedAdapter]] = {}
    for record in records:
        metrics = record.metrics if isinstance(record.metrics, dict) else {}
        candidate = metrics.get("gate", {}).get("candidate", {}) if isinstance(metrics.get("gate"), dict) else {}
        models.setdefault(record.base_model, {})[record.asset_class] = PromotedAdapter(
            adapter_id=record.id,
            path=record.path,
            base_version=metrics.get("base_version"),
            trained_at=record.trained_at,
            as_of=record.as_of,
            gate={key: candidate.get(key) for key in ("validation_loss", "crps")},
            reason=record.reason,
        )
    return AdapterManifest(models=models)


def publish_promoted(settings: Settings, engine: Engine, adapter: AdapterRecord | None = None) -> AdapterManifest:
    """Rewrite the manifest from every promoted row of ``model_adapters``; returns what was written.
    ``ManifestNotWritten`` (naming ``adapter``, the promotion being published, when given) when it cannot be."""
    path = manifest_path(settings)
    with manifest_lock(engine):
        manifest = manifest_from_records(all_promoted_adapters(engine))
        try:
            written = write_manifest(path, manifest, written_at=datetime.now(UTC))
        except OSError as exc:
            error = ManifestNotWritten(path, exc, adapter)
            log.error("%s", error)
            raise error from exc
    log.info("adapters manifest %s: %d promoted adapter(s)", path, written.count())
    return written


def promote(
    settings: Settings, engine: Engine, adapter_id: int, reason: str | None = None, *, tell: bool = True
) -> AdapterRecord:
    """Promote an adapter by hand (demoting the previous one of its class and base), publish the manifest and,
    with ``tell``, send it to the inference service."""
    record = promote_adapter(engine, adapter_id, reason)
    manifest = publish_promoted(settings, engine, record)
    if tell:
        tell_inference_service(settings, manifest)
    return record


def tell_inference_service(settings: Settings, manifest: AdapterManifest | None = None) -> bool:
    """Ask the inference service to load the promoted adapters now (those of ``manifest`` when given, else
    those of its own manifest file). If it cannot be reached it loads them at its next start: logged, never
    an error of the promotion. Returns whether the service answered."""
    from candlecast.inference.client import InferenceClient, InferenceError

    body: dict[str, Any] | None = None if manifest is None else manifest.model_dump(mode="json")
    try:
        with InferenceClient(settings.inference.url, settings.inference.token, timeout=60, retries=1) as client:
            client.reload_adapters(body)
    except InferenceError as exc:
        log.warning("inference service not told about the promoted adapters (it loads them at its next start): %s", exc)
        return False
    log.info("inference service at %s reloaded its adapters", settings.inference.url)
    return True
