"""What a provenance record is made of, computed once and cheaply: the code version (read at import, never by
shelling out per request), stable hashes of settings and of input candles, and file digests (weights).

The record itself is assembled by the model (``Forecaster.provenance``: model, revision, checkpoint, adapter,
seed) and by the batch job (configuration, data cutoffs, inputs); docs/provenance.md describes it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CODE_VERSION", "candles_sha256", "file_sha256", "plain", "stable_hash"]

_ROOT = Path(__file__).resolve().parents[3]  # the checkout when running from source (src/candlecast/models)


def _package_version() -> str:
    try:
        return metadata.version("candlecast")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _git_commit(root: Path) -> str | None:
    """The commit checked out at ``root``, read from ``.git`` (a folder, or a worktree's pointer file)."""
    dot_git = root / ".git"
    try:
        if dot_git.is_file():  # a worktree: "gitdir: /repo/.git/worktrees/name"
            gitdir = Path(dot_git.read_text().split(":", 1)[1].strip())
            common = Path((gitdir / "commondir").read_text().strip()) if (gitdir / "commondir").is_file() else None
            common = (gitdir / common).resolve() if common is not None else gitdir
        elif dot_git.is_dir():
            gitdir = common = dot_git
        else:
            return None
        head = (gitdir / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head or None
        ref = head.split(":", 1)[1].strip()
        for base in (gitdir, common):
            if (base / ref).is_file():
                return (base / ref).read_text().strip()
        packed = common / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                if line.endswith(" " + ref):
                    return line.split(" ", 1)[0]
    except (OSError, IndexError):
        return None
    return None


def _code_version() -> str:
    """``<package version>+g<commit[:12]>`` when the commit is known (``CANDLECAST_GIT_COMMIT``, set at build
    time, else the checkout's ``.git``), else the package version alone."""
    commit = os.environ.get("CANDLECAST_GIT_COMMIT") or _git_commit(_ROOT)
    version = _package_version()
    return f"{version}+g{commit[:12]}" if commit else version


CODE_VERSION: str = _code_version()


def plain(value: Any) -> Any:
    """``value`` as JSON-able plain data: dataclasses and pydantic models become dicts, tuples lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if hasattr(value, "model_dump"):
        return plain(value.model_dump(mode="json"))
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [plain(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def stable_hash(value: Any) -> str:
    """sha256 of the canonical JSON of ``value`` (sorted keys): equal settings give equal hashes, everywhere."""
    text = json.dumps(plain(value), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def candles_sha256(timestamps_ns: np.ndarray, ohlcv: np.ndarray) -> str:
    """sha256 of candles: their open times (int64 ns) and values (float64, NaN for absent columns, one NaN
    pattern), so any rewritten value, added or removed candle changes it."""
    values = np.array(ohlcv, dtype=">f8")
    values[np.isnan(values)] = np.nan  # one canonical NaN bit pattern
    digest = hashlib.sha256(np.asarray(timestamps_ns, dtype=">i8").tobytes())
    digest.update(values.tobytes())
    return digest.hexdigest()
