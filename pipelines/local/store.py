"""A file-backed stand-in for S3: ``s3://bucket/key`` is ``<root>/<bucket>/<key>``.

Buckets can be mounted from other directories (``--mount sm-pipelines-data=data``), so a spec whose
data lives in S3 reads the same keys from a local folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

from pipelines.errors import UserError


class StoreError(UserError):
    pass


BUCKET = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")


def split_uri(uri: str) -> tuple[str, str]:
    """(bucket, key); refuses what would leave the store: a bucket that is no bucket name, '..' or '.' in a key,
    and a query or fragment (which a URI parser would drop: ``s3://b/data?x=/../..`` must not read ``data``)."""
    if "?" in uri or "#" in uri:
        raise StoreError(f"{uri!r}: '?' and '#' are not allowed in s3:// URIs here (a query or fragment would "
                         "be dropped, reading another key than the one written)")  # fmt: skip
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise StoreError(f"not an s3:// URI: {uri!r}")
    if not BUCKET.match(parsed.netloc) or ".." in parsed.netloc:
        raise StoreError(f"{uri!r}: {parsed.netloc!r} is not an S3 bucket name")
    key = parsed.path[1:]  # the one slash after the bucket
    parts = key.split("/")
    if any(part in ("..", ".") for part in parts):
        raise StoreError(f"{uri!r}: '.' and '..' are not allowed in keys here (they would leave the bucket)")
    if "" in parts[:-1]:  # 'a//b', or a key starting with '/': S3 would keep it, a file system cannot
        raise StoreError(f"{uri!r}: empty key segments ('//') are not allowed here")
    return parsed.netloc, key


_PENDING = ".pending-"  # an object being written: invisible until renamed into place


def _unpublished(name: str) -> bool:
    return name.startswith(_PENDING) or name.endswith(".tmp")


@contextlib.contextmanager
def _publishing(target: Path) -> Iterator[Path]:
    """A temporary name beside ``target``, renamed onto it in one step once written: a reader sees the old
    object or the new one, never part of one, and a crash leaves only a hidden temporary (never listed)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{_PENDING}{secrets.token_hex(4)}-{target.name}")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


class ObjectStore:
    def __init__(self, root: Path, mounts: dict[str, Path] | None = None):
        self.root = Path(root).resolve()
        self.mounts = {b: Path(p).resolve() for b, p in (mounts or {}).items()}

    def _bucket_root(self, uri: str) -> Path:
        bucket, _ = split_uri(uri)
        return self.mounts.get(bucket, self.root / bucket).resolve()

    def path(self, uri: str) -> Path:
        bucket, key = split_uri(uri)
        base = self.mounts.get(bucket, self.root / bucket)
        path = (base / key).resolve() if key else base.resolve()
        if not path.is_relative_to(base.resolve()):  # a symbolic link inside the bucket pointing out of it
            raise StoreError(f"{uri!r} escapes its bucket")
        return path

    def put_bytes(self, uri: str, data: bytes) -> None:
        with _publishing(self.path(uri)) as tmp:
            tmp.write_bytes(data)

    def objects(self, uri: str) -> Iterator[tuple[str, Path]]:
        """(relative key, file) of every object under a prefix; a URI naming one object yields just it.

        A symbolic link under the prefix, to a file or to a directory, is followed while it stays inside its
        bucket and refused (`StoreError`) when it leads out of it: a job must read nothing outside."""
        path = self.path(uri)
        if path.is_file():
            yield path.name, path
            return
        if not path.is_dir():
            return
        base = self._bucket_root(uri)
        found, seen = [], set()
        for directory, dirs, files in os.walk(path, followlinks=True):
            real = os.path.realpath(directory)
            if real in seen:  # a link back into a directory already listed: its objects are listed once
                dirs.clear()
                continue
            seen.add(real)
            for name in [*dirs, *files]:
                entry = Path(directory) / name
                if entry.is_symlink() and not entry.resolve().is_relative_to(base):
                    raise StoreError(f"{uri!r}: {entry.relative_to(path).as_posix()} is a link to {entry.resolve()}, "
                                     "outside its bucket; links must stay inside the bucket")  # fmt: skip
            found += [Path(directory) / f for f in files if not _unpublished(f)]
        for f in sorted(found):
            if f.is_file():
                yield f.relative_to(path).as_posix(), f

    def exists(self, uri: str) -> bool:
        return next(self.objects(uri), None) is not None

    def download(self, uri: str, directory: Path, share: tuple[int, int] | None = None) -> int:
        """Stage a prefix (or one object) into a directory, as SageMaker does for an S3Prefix input.
        ``share=(k, n)``: instance k of n receives every n-th object by key (ShardedByS3Key), maybe none."""
        directory.mkdir(parents=True, exist_ok=True)
        n = 0
        objects = list(self.objects(uri))
        if share is not None and objects:
            objects = objects[share[0] :: share[1]]
            if not objects:
                return 0
        made = {directory}
        for rel, f in objects:
            target = directory / rel
            if target.parent not in made:
                target.parent.mkdir(parents=True, exist_ok=True)
                made.add(target.parent)
            # a copy, as File mode gives: a job writing to its input cannot touch the store; the file's times are
            # the download's, as an object downloaded from S3 has (copyfile, not copy2)
            shutil.copyfile(f, target)
            n += 1
        if n == 0:
            raise StoreError(f"nothing at {uri} (local store: {self.path(uri)})")
        return n

    def upload(self, directory: Path, uri: str) -> int:
        """Every file under ``directory`` as an object under the prefix, each published whole (as S3 puts
        objects: added or replaced, never half-written; objects already there stay)."""
        n = 0
        for f in sorted(directory.rglob("*")):
            if f.is_file():
                self.upload_file(f, uri.rstrip("/") + "/" + f.relative_to(directory).as_posix())
                n += 1
        return n

    def upload_file(self, file: Path, uri: str) -> None:
        with _publishing(self.path(uri)) as tmp:
            shutil.copy2(file, tmp)

    def digest(self, uri: str) -> str:
        """Hash of the content under a prefix: names and bytes, not locations or times."""
        h = hashlib.sha256()
        for rel, f in self.objects(uri):
            h.update(rel.encode() + b"\0")
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        return h.hexdigest()
