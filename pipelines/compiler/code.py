"""The step scripts, packed reproducibly and addressed by the hash of their content.

The same bytes give the same key, so compiling twice gives the same definition and SageMaker's step
cache can hit; a changed script gives a new key, so a stale cache never serves old code.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

from pipelines import layout


@dataclass(frozen=True)
class CodeBundle:
    files: dict[str, bytes]  # name -> content, sorted
    digest: str

    @functools.cached_property
    def tarball(self) -> bytes:
        """The scripts as ``sourcedir.tar.gz``, made when first asked for: a compile needs only the digest (its
        URIs), and `local run` makes the archive beside the compile (`pipelines.cli.common.compile_spec`)."""
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, data in self.files.items():
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), 0o644, 0
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                tar.addfile(info, io.BytesIO(data))
        return gzip.compress(raw.getvalue(), compresslevel=6, mtime=0)  # 9 takes twice as long for 0.3% less

    def archived(self) -> CodeBundle:
        """This bundle, its archive made now rather than when first uploaded."""
        self.tarball  # noqa: B018 - a cached property: made here, once
        return self

    def prefix(self, bucket: str, pipeline: str) -> str:
        return f"s3://{bucket}/{pipeline}/code/{self.digest}"

    def sourcedir_uri(self, bucket: str, pipeline: str) -> str:
        """The training jobs' ``sagemaker_submit_directory``."""
        return f"{self.prefix(bucket, pipeline)}/sourcedir.tar.gz"

    def scripts_uri(self, bucket: str, pipeline: str) -> str:
        """The processing jobs' code input: the scripts as plain files."""
        return f"{self.prefix(bucket, pipeline)}/scripts/"

    def uploads(self, bucket: str, pipeline: str) -> dict[str, bytes]:
        """Every object `pipeline-upsert` (or the local engine) must put in place before a run."""
        out = {self.sourcedir_uri(bucket, pipeline): self.tarball}
        out |= {self.scripts_uri(bucket, pipeline) + name: data for name, data in self.files.items()}
        return out


def pack_steps(directory: Path | None = None) -> CodeBundle:
    files = {name: path.read_bytes() for name, path in layout.code_files(directory).items()}
    digest = hashlib.sha256()
    for name, data in files.items():
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return CodeBundle(files, digest.hexdigest()[:16])
