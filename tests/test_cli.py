"""The CLI as a package of command groups: every command answers ``--help`` with its own options, the set of
commands is what the Makefile and the README name, and the options shared by groups are declared once."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]

COMMANDS = [
    "validate", "graph", "definition", "report", "upsert", "run", "list", "describe", "logs", "retry", "stop",
    "local run", "local retry", "local list", "local describe", "local logs", "local gc",
    "registry list", "registry describe", "registry approve", "registry reject", "deploy", "invoke",
    "endpoints list", "endpoints logs", "endpoints stop", "image-build", "image-push", "track", "ui", "compare",
]  # fmt: skip


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _commands(sub, (*prefix, name)) or [(*prefix, name)]
    return found


def test_the_commands_are_the_ones_the_makefile_and_readme_name() -> None:
    assert sorted(" ".join(c) for c in _commands(build_parser())) == sorted(COMMANDS)
    makefile = (ROOT / "Makefile").read_text()
    for command in ("validate", "graph", "definition", "upsert", "run", "retry", "local run", "image-build"):
        assert f"-m pipelines {command}" in makefile, command


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_answers_help_with_its_usage(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command.split(), "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m pipelines {command}") and "-h, --help" in out


def test_shared_options_read_the_same_wherever_they_appear(capsys: pytest.CaptureFixture[str]) -> None:
    helps = {}
    for command in ("local run", "local retry", "local list", "report", "deploy", "endpoints list"):
        with pytest.raises(SystemExit):
            main([*command.split(), "--help"])
        helps[command] = " ".join(capsys.readouterr().out.split())
    root_help = "local run root: the object store, cache, executions, registry and endpoints"
    assert all(root_help in text for text in helps.values())
    run_options = ("--mount", "--nproc", "--parallel", "--no-cache", "--tail")
    assert all(o in helps["local run"] and o in helps["local retry"] for o in run_options)


def test_python_dash_m_pipelines_is_the_cli() -> None:
    done = subprocess.run([sys.executable, "-m", "pipelines", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and "local" in done.stdout and "validate" in done.stdout
    done = subprocess.run([sys.executable, "-m", "pipelines", "nope"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and "invalid choice: 'nope'" in done.stderr


def test_bad_input_exits_2_with_one_line_and_no_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["local", "describe", "nope", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no execution 'nope'") and "Traceback" not in err
    assert main(["local", "run", "config/digits.yaml", "--mount", "nodirectory", "--root", str(tmp_path)]) == 2
    assert "--mount 'nodirectory' is not BUCKET=DIRECTORY" in capsys.readouterr().err
