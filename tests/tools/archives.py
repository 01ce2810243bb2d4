"""A training job's source archive (``sourcedir.tar.gz``) holding one script, put into a local object store."""

from __future__ import annotations

import io
import tarfile
import textwrap
from typing import Any


def put_source_archive(store: Any, uri: str, name: str, source: str) -> None:
    """``source`` (dedented) as ``name`` in a gzipped tar at ``uri``, as `make pipeline-upsert` uploads code."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        data = textwrap.dedent(source).encode()
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    store.put_bytes(uri, raw.getvalue())
