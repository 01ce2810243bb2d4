"""The local step cache: one entry per key under ``<run root>/cache/``, honouring ``ExpireAfter``.

As SageMaker keys its cache: the pipeline, the step's name and Type, and the step Type's documented request
attributes on URIs as given (`Runner.cache_material`), never the data's content. This module hashes them,
stores results, and serves a hit only while it has not expired and its outputs still exist; a hit whose
input data changed under the same URIs is still a hit (as on SageMaker), and says so.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from pipelines.errors import UserError
from pipelines.files import write_atomic
from pipelines.local.runners import Runner
from pipelines.local.store import ObjectStore, StoreError

_DURATION = TypeAdapter(timedelta)
PENDING = "cache-pending"  # an execution's entries, waiting for the execution to succeed


class CacheConfigError(UserError):
    pass


def parse_duration(text: str) -> timedelta:
    """An ISO 8601 duration (``P30D``, ``PT12H``) as a timedelta, read by pydantic's parser."""
    try:
        return _DURATION.validate_python(text)
    except ValidationError:
        raise CacheConfigError(f"bad ExpireAfter duration {text!r}") from None


def cache_key(pipeline: str, step_name: str, runner: Runner, step_type: str, args: dict[str, Any]) -> str:
    material = {"Pipeline": pipeline, "Step": step_name, "Type": step_type, **runner.cache_material(args)}
    blob = json.dumps(material, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class StepCache:
    def digests(self, uris: list[str]) -> dict[str, str]:
        out = {}
        for uri in uris:
            try:
                out[uri] = self.store.digest(uri)
            except (StoreError, OSError):
                continue
        return out

    def changed_inputs(self, entry: dict[str, Any]) -> list[str]:
        """The inputs whose data is not what the cached run read (same URIs, other content)."""
        now = self.digests(list(entry.get("inputs", {})))
        return [uri for uri, digest in entry.get("inputs", {}).items() if now.get(uri) != digest]

    def __init__(self, root: Path, store: ObjectStore):
        self.directory = Path(root) / "cache"
        self.store = store

    def lookup(self, key: str, expire_after: str | None) -> dict[str, Any] | None:
        """The entry for a key (its ``execution`` and ``result``), unless expired or its outputs are gone."""
        path = self.directory / f"{key}.json"
        if not path.exists():
            return None
        entry: dict[str, Any] = json.loads(path.read_text())
        created = datetime.fromisoformat(entry["created"])
        if expire_after and datetime.now(UTC) - created > parse_duration(expire_after):
            return None
        if not all(self.store.exists(uri) for uri in entry["outputs"]):
            return None  # the earlier outputs are gone: run again
        return entry

    def put(self, key: str, result: dict[str, Any], outputs: list[str], execution: Path,
            inputs: list[str] | None = None) -> None:  # fmt: skip
        """Keep a succeeded step's entry with its execution (``<execution>/cache-pending/``): it joins the cache
        only once the whole execution succeeded (`publish`).

        SageMaker's developer guide ("Caching pipeline steps") said: "A previous run of a pipeline step is
        considered successful when the run itself and the entire pipeline are both successful." Its current
        wording keeps "Step caching only considers successful runs — it never reuses failed runs", without
        saying which runs count. With the evidence mixed, the engine takes the rule under which a local hit
        never hides a rerun on SageMaker: nothing from an execution that failed or stopped is reused (a later
        retry of that execution that succeeds publishes its entries then)."""
        # the outputs that hold something: a hit needs them still there (an empty output uploads nothing)
        written = [uri for uri in outputs if self.store.exists(uri)]
        entry = {
            "created": datetime.now(UTC).isoformat(),
            "execution": execution.name,
            "result": result,
            "outputs": written,
            "inputs": self.digests(inputs or []),  # the data read, to say when it changed under the same URIs
        }
        write_atomic(execution / PENDING / f"{key}.json", json.dumps(entry, default=str))

    def publish(self, execution: Path) -> int:
        """Move an execution's entries into the cache, once it succeeded; how many."""
        pending = sorted((execution / PENDING).glob("*.json"))
        self.directory.mkdir(parents=True, exist_ok=True)
        for path in pending:
            try:  # moved whole into place: a reader sees the old entry or this one (no copy, no new file)
                os.replace(path, self.directory / path.name)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                # another file system (the cache directory mounted apart): copied whole instead
                write_atomic(self.directory / path.name, path.read_text())
                path.unlink()
        return len(pending)
