"""What a step's image provides against what its script imports: `validate` refuses a script that would
fail on SageMaker with an ImportError, and the local engine checks what a processing job would install."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pipelines import layout
from pipelines.cli import main
from pipelines.spec import images
from tests.tools.engine import engine_with, processing_step

ROOT = Path(__file__).resolve().parents[1]


def _steps(tmp_path: Path, files: dict[str, str]) -> Path:
    steps = tmp_path / "steps"
    steps.mkdir()
    for name, text in files.items():
        (steps / name).write_text(textwrap.dedent(text))
    return steps


def test_imports_are_read_through_sibling_modules_without_the_stdlib_or_guarded_ones(tmp_path: Path) -> None:
    steps = _steps(tmp_path, {
        "job.py": """
            import argparse, json
            import numpy as np
            from helpers import load
            try:
                import fancy_optional
            except ImportError:
                fancy_optional = None
            def later():
                import pandas
        """,
        "helpers.py": "import pyarrow.parquet as pq\nfrom collections import abc\n",
    })  # fmt: skip
    assert images.third_party_imports(steps / "job.py") == {"numpy", "pyarrow", "pandas"}


def test_each_role_provides_its_declared_packages() -> None:
    stock, _ = images.provided("processing", custom=False)
    assert {"torch", "numpy", "PIL", "pyarrow"} <= stock  # pyarrow from steps/requirements-processing.txt
    training, _ = images.provided("training", custom=False)
    assert "pyarrow" not in training  # training jobs install steps/requirements.txt only
    custom, what = images.provided("processing", custom=True)
    assert "pyarrow" in custom and "containers/training" in what


def test_the_projects_image_bakes_in_what_a_processing_job_would_install() -> None:
    installs = images._names(ROOT / "steps" / images.PROCESSING_REQUIREMENTS, requirements=True)
    baked = images._names(ROOT / "containers" / "training" / "requirements.txt", requirements=True)
    assert installs <= baked


def test_every_bundled_script_is_provided_by_its_image() -> None:
    for script, kind in (("preprocess.py", "processing"), ("evaluate.py", "evaluation"), ("train.py", "tuning")):
        assert images.missing(ROOT / "steps" / script, kind, custom=False)[0] == []
    assert images.missing(ROOT / "steps" / "inference.py", "inference", custom=False)[0] == []


SPEC = """\
name: imports
steps:
  - name: prep
    kind: processing
    script: job.py
    instance: {type: ml.m5.xlarge}
    outputs: [out]
"""


@pytest.mark.parametrize("custom", [False, True], ids=["stock", "custom"])
def test_validate_refuses_a_script_importing_what_its_image_lacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], custom: bool
) -> None:
    steps = _steps(tmp_path, {"job.py": """
        import argparse
        import pandas
        p = argparse.ArgumentParser()
        p.add_argument("--out")
    """})  # fmt: skip
    monkeypatch.setattr(layout, "STEPS", steps)
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC + ("    image: {custom: true}\n" if custom else ""))
    assert main(["validate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert f"{spec}:5:" in err and "steps/job.py imports pandas" in err
    assert ("containers/training/requirements.txt" if custom else "steps/requirements-processing.txt") in err
    # declared, it passes
    (steps / images.PROCESSING_REQUIREMENTS).write_text("pandas>=2\n")
    if not custom:
        assert main(["validate", str(spec)]) == 0


def test_a_local_processing_job_checks_what_its_entry_script_would_install(tmp_path: Path) -> None:
    entry = (ROOT / "steps" / "processing_entry.sh").read_text()
    step = processing_step("prep", "job.py")
    code = "/opt/ml/processing/input/code"
    step["Arguments"]["AppSpecification"]["ContainerEntrypoint"] = ["/bin/bash", f"{code}/processing_entry.sh",
                                                                   f"{code}/job.py"]  # fmt: skip
    scripts_ = {"processing_entry.sh": entry, "job.py": "print('ran')",
                "requirements-processing.txt": "numpy>=1\nno-such-package-anywhere>=1\n"}  # fmt: skip
    execution = engine_with(tmp_path / "missing", scripts_, [step])
    assert execution.run() == "Failed"
    reason = execution.failure["reason"]
    assert "requirements-processing.txt asks for" in reason and "no-such-package-anywhere>=1 (not installed)" in reason
    scripts_["requirements-processing.txt"] = "numpy>=1\n"
    execution = engine_with(tmp_path / "met", scripts_, [step])
    assert execution.run() == "Succeeded", execution.failure
    log = (execution.step_dir("prep") / "log.txt").read_text()
    assert "requirements-processing.txt: every requirement is met" in log and "\nran" in log
