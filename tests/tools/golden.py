"""Golden definitions: each spec under tests/golden/ next to the definition it must compile to.

`make golden` (``python -m tests.tools.golden``) rewrites them after an intended change; the tests
compare byte for byte. The settings are fixed so the files do not depend on who runs them, and the
code digest is replaced by a marker so editing a step script does not churn every golden file.
"""

from __future__ import annotations

import re
from pathlib import Path

from pipelines.settings import Settings

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden"
CONFIG_DIR = GOLDEN_DIR.parents[1] / "config"
GOLDEN_SETTINGS = Settings(
    region="eu-west-1",
    role_arn="arn:aws:iam::123456789012:role/sm-pipelines-execution",
    default_bucket="golden-bucket",
    name_prefix="",
    account_id="123456789012",
)
_DIGEST = re.compile(r"/code/[0-9a-f]{16}/")


def golden_definition(spec_path: Path) -> str:
    from pipelines.compiler import compile_pipeline
    from pipelines.loader import load_spec

    definition = compile_pipeline(load_spec(spec_path), GOLDEN_SETTINGS).definition
    return _DIGEST.sub("/code/<code-digest>/", definition)


def regenerate() -> list[Path]:
    """Copy the bundled specs beside their goldens, then compile every spec in the folder."""
    written = []
    for config in sorted(CONFIG_DIR.glob("*.yaml")):
        (GOLDEN_DIR / config.name).write_text(config.read_text())
    for spec_path in sorted(GOLDEN_DIR.glob("*.yaml")):
        out = spec_path.with_suffix(".json")
        out.write_text(golden_definition(spec_path))
        written.append(out)
    return written


if __name__ == "__main__":
    for written in regenerate():
        print(f"wrote {written}")
