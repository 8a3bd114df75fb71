"""The promoted-adapters manifest: how promoted fine-tune adapters reach the model server, as data.

The fine-tune job records every adapter in ``model_adapters`` (the record) and, after a promotion, writes
``promoted.json`` in the adapters directory (``finetune.adapters_dir``, default ``<data_dir>/adapters``)
from that record. The inference service reads this file at start-up and on ``POST /admin/reload-adapters``
(which may carry the same content in its body); it never opens the database. The format::

    {
      "format": 1,
      "written_at": "2026-03-01T06:40:12+00:00",
      "models": {                                  # base model name, as configured (CANDLECAST_MODELS)
        "kronos-small": {
          "crypto": {                              # asset class
            "adapter_id": 12,                      # model_adapters.id
            "path": "/srv/candlecast/var/adapters/kronos-small/crypto/20260301T0600-20260301T063955",
            "base_version": "sha256:ab12cd34ef56", # the base weights it was trained on
            "trained_at": "2026-03-01T06:39:55+00:00",
            "as_of": "2026-03-01T06:00:00+00:00",
            "gate": {"validation_loss": 6.91, "crps": 0.0305},
            "reason": "promoted: beats the base model kronos-small on both: ..."
          }
        }
      }
    }

The file is replaced atomically (a temporary file in the same folder, then ``os.replace``): a reader sees
the old manifest or the new one, never half of one. Pure: json and the file system, no database.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from candlecast.config import Settings
from candlecast.errors import InputError

__all__ = [
    "FORMAT",
    "MANIFEST_FILE",
    "AdapterManifest",
    "PromotedAdapter",
    "adapters_root",
    "manifest_path",
    "parse_manifest",
    "read_manifest",
    "write_manifest",
]

MANIFEST_FILE = "promoted.json"
FORMAT = 1


class PromotedAdapter(BaseModel):
    """The promoted adapter of one (base model, asset class)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    adapter_id: int
    path: str = Field(min_length=1)
    base_version: str | None = None
    trained_at: AwareDatetime
    as_of: AwareDatetime | None = None
    gate: dict[str, float | None] = Field(default_factory=dict)  # the candidate's validation_loss and crps
    reason: str | None = None

    def describe(self, asset_class: str, loaded: bool, reason: str | None = None) -> dict[str, Any]:
        """What ``GET /models`` shows about this adapter (``reason``: why it did not load, when it did not)."""
        return {
            "asset_class": asset_class,
            "adapter_id": self.adapter_id,
            "path": self.path,
            "trained_at": self.trained_at.isoformat(),
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "validation_loss": self.gate.get("validation_loss"),
            "crps": self.gate.get("crps"),
            "loaded": loaded,
            "reason": reason if reason is not None else self.reason,
        }


class AdapterManifest(BaseModel):
    """Every promoted adapter: base model name -> asset class -> adapter."""

    model_config = ConfigDict(extra="ignore")

    format: int = FORMAT
    written_at: AwareDatetime | None = None
    models: dict[str, dict[str, PromotedAdapter]] = Field(default_factory=dict)

    def for_model(self, name: str) -> dict[str, PromotedAdapter]:
        """The promoted adapters of base model ``name``, by asset class (empty when it has none)."""
        return dict(self.models.get(name, {}))

    def count(self) -> int:
        return sum(len(by_class) for by_class in self.models.values())


def adapters_root(settings: Settings) -> Path:
    """Where adapter folders and the manifest live: ``finetune.adapters_dir``, else ``<data_dir>/adapters``."""
    return settings.finetune.adapters_dir or settings.data_dir / "adapters"


def manifest_path(settings: Settings) -> Path:
    return adapters_root(settings) / MANIFEST_FILE


def parse_manifest(data: object, where: str = "manifest") -> AdapterManifest:
    """A manifest from decoded JSON; ``InputError`` naming the first bad field (``where`` prefixes it)."""
    if not isinstance(data, dict):
        raise InputError(where, f"expected a JSON object, found {type(data).__name__}")
    try:
        manifest = AdapterManifest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join([where, *(str(part) for part in first.get("loc", ()))])
        raise InputError(field, str(first.get("msg", "invalid"))) from None
    if manifest.format != FORMAT:
        raise InputError(f"{where}.format", f"expected format {FORMAT}, found {manifest.format}")
    return manifest


def read_manifest(path: Path) -> AdapterManifest | None:
    """The manifest at ``path``; None when there is no file (nothing promoted yet). ``InputError`` when the
    file is not a valid manifest, ``OSError`` when it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(str(path), f"not valid JSON: {exc}") from None
    return parse_manifest(data, str(path))


def write_manifest(path: Path, manifest: AdapterManifest, written_at: datetime | None = None) -> AdapterManifest:
    """Replace the manifest at ``path`` atomically (temporary file in the same folder, fsync, ``os.replace``);
    returns what was written. Raises ``OSError`` when it cannot be written (the old file is then untouched)."""
    if written_at is not None:
        manifest = manifest.model_copy(update={"written_at": written_at})
    path.parent.mkdir(parents=True, exist_ok=True)
    text = manifest.model_dump_json(indent=2) + "\n"
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(temporary, 0o644)  # mkstemp creates 0600; the model server may run as another user
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable where the platform allows it
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    return manifest
