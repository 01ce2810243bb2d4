"""The step scripts stand alone: SageMaker runs them in its containers, where the package is absent."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

STEPS = sorted((Path(__file__).resolve().parents[1] / "steps").glob("*.py"))
ALLOWED = {"torch", "torchvision", "numpy", "pyarrow", "PIL", "sagemaker_inference"}
# imported only when a job is given a tracking URI, inside try/except: a container without it trains on
OPTIONAL = {"mlflow"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("script", STEPS, ids=lambda p: p.name)
def test_step_scripts_import_only_the_container_libraries_the_stdlib_and_each_other(script: Path) -> None:
    import sys

    siblings = {p.stem for p in STEPS}
    foreign = imported_roots(script) - ALLOWED - OPTIONAL - siblings - set(sys.stdlib_module_names) - {"__future__"}
    assert not foreign, f"{script.name} imports {sorted(foreign)}"
