"""The local model registry: model package groups and their versions in a SQLite file under the run root.

Versions are 1, 2, 3... per group, as on SageMaker. Each registration is one ``BEGIN IMMEDIATE``
transaction (WAL mode), so registrations from several processes at once never lose or duplicate a
version. Every package reads back shaped like ``DescribeModelPackage``, the same shape the SageMaker
registry returns, so the CLI shows both alike.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.errors import UserError
from pipelines.local.arns import arn

APPROVAL_STATUSES = ("Approved", "Rejected", "PendingManualApproval")

SCHEMA = """
CREATE TABLE IF NOT EXISTS packages (
    group_name TEXT NOT NULL,
    version INTEGER NOT NULL,
    approval_status TEXT NOT NULL,
    approval_description TEXT,
    description TEXT,
    inference_specification TEXT NOT NULL,
    model_metrics TEXT,
    metrics TEXT,
    generated_by TEXT,
    created TEXT NOT NULL,
    modified TEXT NOT NULL,
    PRIMARY KEY (group_name, version)
)
"""


class RegistryError(UserError):
    """An unknown group or version, or a bad approval status: the CLI prints it and exits 2."""


def package_arn(group: str, version: int) -> str:
    return arn("model-package", f"{group}/{version}")


def parse_ref(text: str) -> tuple[str, int | None]:
    """``GROUP`` or ``GROUP:VERSION`` (or a package ARN) -> (group, version or None for the latest)."""
    if text.startswith("arn:") and "model-package/" in text:
        group, _, version = text.split("model-package/", 1)[1].partition("/")
        return group, int(version) if version.isdigit() else None
    group, sep, version = text.partition(":")
    if sep and not version.isdigit():
        raise RegistryError(f"{text!r}: the version after ':' must be a number, e.g. {group}:3")
    return group, int(version) if sep else None


class LocalRegistry:
    def __init__(self, root: Path):
        self.path = Path(root) / "registry.db"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None)  # transactions are explicit
        db.row_factory = sqlite3.Row
        return db

    # ----------------------------------------------------------------- writing

    def register(  # noqa: PLR0913 - the members of CreateModelPackage a registration records
        self,
        group: str,
        inference_specification: dict[str, Any],
        approval_status: str,
        model_metrics: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        description: str | None = None,
        generated_by: str | None = None,
    ) -> dict[str, Any]:
        """A new version of ``group``: the next number, taken and written in one transaction."""
        check_status(approval_status)
        now = _now()
        with closing(self._connect()) as db:
            db.execute("BEGIN IMMEDIATE")  # the write lock first: no two registrations see the same maximum
            try:
                row = db.execute("SELECT MAX(version) FROM packages WHERE group_name = ?", (group,)).fetchone()
                version = (row[0] or 0) + 1
                db.execute(
                    "INSERT INTO packages VALUES (?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?)",
                    (group, version, approval_status, description, json.dumps(inference_specification),
                     json.dumps(model_metrics or {}), json.dumps(metrics or {}), generated_by, now, now),
                )  # fmt: skip
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return self.describe(group, version)

    def set_status(self, group: str, version: int | None, status: str, reason: str | None = None) -> dict[str, Any]:
        check_status(status)
        package = self.describe(group, version)
        with closing(self._connect()) as db:
            db.execute(
                "UPDATE packages SET approval_status = ?, approval_description = ?, modified = ? "
                "WHERE group_name = ? AND version = ?",
                (status, reason, _now(), group, package["ModelPackageVersion"]),
            )
        return self.describe(group, package["ModelPackageVersion"])

    # ----------------------------------------------------------------- reading

    def groups(self) -> list[str]:
        with closing(self._connect()) as db:
            return [r[0] for r in db.execute("SELECT DISTINCT group_name FROM packages ORDER BY group_name")]

    def list(self, group: str | None = None) -> list[dict[str, Any]]:
        """Packages, newest version first within each group (as ListModelPackages sorts by creation)."""
        query = "SELECT * FROM packages" + (" WHERE group_name = ?" if group else "")
        query += " ORDER BY group_name, version DESC"
        with closing(self._connect()) as db:
            return [_describe(r) for r in db.execute(query, (group,) if group else ())]

    def describe(self, group: str, version: int | None = None) -> dict[str, Any]:
        with closing(self._connect()) as db:
            if version is None:
                row = db.execute(
                    "SELECT * FROM packages WHERE group_name = ? ORDER BY version DESC LIMIT 1", (group,)
                ).fetchone()
            else:
                row = db.execute(
                    "SELECT * FROM packages WHERE group_name = ? AND version = ?", (group, version)
                ).fetchone()
        if row is None:
            from pipelines.suggest import suggest

            if group not in self.groups():
                raise RegistryError(f"no model package group '{group}' in {self.path}; {suggest(group, self.groups())}")
            raise RegistryError(f"model package group '{group}' has no version {version}")
        return _describe(row)


def check_status(status: str) -> None:
    if status not in APPROVAL_STATUSES:
        from pipelines.suggest import did_you_mean

        hint = did_you_mean(status, APPROVAL_STATUSES)
        raise RegistryError(
            f"approval status {status!r} is not one of {', '.join(APPROVAL_STATUSES)}" + (f"; {hint}" if hint else "")
        )


def _describe(row: sqlite3.Row) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ModelPackageGroupName": row["group_name"],
        "ModelPackageVersion": row["version"],
        "ModelPackageArn": package_arn(row["group_name"], row["version"]),
        "ModelPackageStatus": "Completed",
        "ModelApprovalStatus": row["approval_status"],
        "CreationTime": row["created"],
        "LastModifiedTime": row["modified"],
        "InferenceSpecification": json.loads(row["inference_specification"]),
        "ModelMetrics": json.loads(row["model_metrics"] or "{}"),
        "Metrics": json.loads(row["metrics"] or "{}"),  # the evaluation report itself, read at registration
    }
    if row["approval_description"]:
        out["ApprovalDescription"] = row["approval_description"]
    if row["description"]:
        out["ModelPackageDescription"] = row["description"]
    if row["generated_by"]:
        out["MetadataProperties"] = {"GeneratedBy": row["generated_by"]}
    return out


def _now() -> str:
    return datetime.now(UTC).isoformat()
