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
    files: dict[str, str]  # upload URI -> file in the entry

    def uploads(self) -> dict[str, bytes]:
        return {uri: (self.directory / name).read_bytes() for uri, name in self.files.items()}

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.definition)
        return path


def enabled() -> bool:
    return os.environ.get("SMP_NO_COMPILE_CACHE", "") not in ("1", "true", "yes")


def load(cache_dir: Path, config: str | Path, spec: Any, settings: Any) -> CachedPipeline | None:
    if not enabled():
        return None
    entry = cache_dir / key(config, settings.model_dump_json())
    try:
        meta = json.loads((entry / "meta.json").read_text())
        definition = (entry / "definition.json").read_text()
    except (OSError, json.JSONDecodeError):
        return None
    if not all((entry / name).is_file() for name in meta["files"].values()):
        return None
    os.utime(entry)  # recently used: kept by the pruning below
    return CachedPipeline(meta["name"], definition, _Code(meta["digest"]), settings, spec, entry, meta["files"])


def save(cache_dir: Path, config: str | Path, compiled: Any) -> None:
    if not enabled():
        return
    entry = cache_dir / key(config, compiled.settings.model_dump_json())
    entry.mkdir(parents=True, exist_ok=True)
    files = {}
    for i, (uri, data) in enumerate(sorted(compiled.uploads().items())):
        name = f"upload-{i:03d}.bin"
        (entry / name).write_bytes(data)
        files[uri] = name
    (entry / "definition.json").write_text(compiled.definition)
    # written last: an entry without it is incomplete and never read
    write_atomic(entry / "meta.json", json.dumps({"name": compiled.name, "digest": compiled.code.digest,
                                                  "files": files}))  # fmt: skip
    entries = sorted((p for p in cache_dir.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[KEEP:]:
        shutil.rmtree(old, ignore_errors=True)
