"""Compiled definitions reused while nothing they are made of changed, so a rerun skips importing the SDK.

A definition is a pure function of the spec file, every file the code archives carry (scripts, requirement
files, entry scripts), every file of the image build contexts (their hash tags the images it names), the
package's own source (loader, checks, compiler, the service-model check), the settings and the versions of
the SageMaker SDK and botocore (`pipelines.layout.compile_inputs` lists the files). The key hashes all of
them; an entry holds the definition (already checked against the service model), the code archives and the
code digest. ``SMP_NO_COMPILE_CACHE=1`` turns it off.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from pipelines import layout
from pipelines.files import write_atomic

KEEP = 16  # entries kept, newest first
UPLOADS = "uploads.bin"  # every object a run puts in place before it starts, one after another


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "none"


def key(config: str | Path, settings_json: str, root: Path | None = None) -> str:
    root = root or layout.ROOT
    digest = hashlib.sha256()
    for path in [Path(config), *layout.compile_inputs(root)]:
        digest.update(str(path.relative_to(root) if path.is_relative_to(root) else path.name).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    digest.update(settings_json.encode())
    for package in ("sagemaker", "botocore"):
        digest.update(f"{package}={_version(package)}".encode())
    return digest.hexdigest()


@dataclass
class _Code:
    digest: str


@dataclass
class CachedPipeline:
    """What the CLI uses of a `CompiledPipeline`, read back from the cache."""

    name: str
    definition: str
    code: _Code
    settings: Any
    spec: Any
    directory: Path
    spans: dict[str, tuple[int, int]]  # upload URI -> (offset, length) in the entry's uploads.bin

    def uploads(self) -> dict[str, bytes]:
        data = (self.directory / UPLOADS).read_bytes()
        return {uri: data[start : start + length] for uri, (start, length) in self.spans.items()}

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.definition)
        return path


def enabled() -> bool:
    return os.environ.get("SMP_NO_COMPILE_CACHE", "") not in ("1", "true", "yes")


def entry_key(config: str | Path, settings: Any) -> str | None:
    """The key of the spec's entry, computed once for a `load` and the `save` after it; ``None`` while the
    cache is off."""
    return key(config, settings.model_dump_json()) if enabled() else None


def load(cache_dir: Path, entry_key: str | None, spec: Any, settings: Any) -> CachedPipeline | None:
    if entry_key is None:
        return None
    entry = cache_dir / entry_key
    try:
        meta = json.loads((entry / "meta.json").read_text())
        definition = (entry / "definition.json").read_text()
        spans = {uri: (int(start), int(length)) for uri, (start, length) in meta["uploads"].items()}
        if sum(length for _, length in spans.values()) != (entry / UPLOADS).stat().st_size:
            return None  # not the archive its index describes
    except (OSError, ValueError, TypeError, KeyError):
        return None
    os.utime(entry)  # recently used: kept by the pruning below
    return CachedPipeline(meta["name"], definition, _Code(meta["digest"]), settings, spec, entry, spans)


def save(cache_dir: Path, entry_key: str | None, compiled: Any) -> None:
    if entry_key is None:
        return
    entry = cache_dir / entry_key
    entry.mkdir(parents=True, exist_ok=True)
    spans, offset = {}, 0
    uploads = sorted(compiled.uploads().items())
    for uri, data in uploads:  # one file of them all: a hit reads one file, not one per step script
        spans[uri] = (offset, len(data))
        offset += len(data)
    (entry / UPLOADS).write_bytes(b"".join(data for _, data in uploads))
    (entry / "definition.json").write_text(compiled.definition)
    # written last: an entry without it is incomplete and never read
    write_atomic(entry / "meta.json", json.dumps({"name": compiled.name, "digest": compiled.code.digest,
                                                  "uploads": spans}))  # fmt: skip
    entries = sorted((p for p in cache_dir.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[KEEP:]:
        shutil.rmtree(old, ignore_errors=True)
