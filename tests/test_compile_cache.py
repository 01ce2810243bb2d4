"""A rerun reuses the compiled definition while nothing it is made of changed, without importing the SDK."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import compile_cache
from pipelines.cli import _compile
from pipelines.compile_cache import CachedPipeline

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def spec_copy(tmp_path: Path) -> Path:
    path = tmp_path / "digits.yaml"
    path.write_text((ROOT / "config" / "digits.yaml").read_text())
    return path


def test_a_second_compile_is_read_back_equal_to_a_fresh_one(spec_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(spec_copy.parent)  # its own build/ directory
    first = _compile(str(spec_copy))
    assert not isinstance(first, CachedPipeline)
    second = _compile(str(spec_copy))
    assert isinstance(second, CachedPipeline)
    assert second.definition == first.definition and second.name == first.name
    assert second.uploads() == first.uploads() and second.code.digest == first.code.digest


def test_a_changed_spec_or_the_switch_compiles_again(spec_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(spec_copy.parent)
    before = _compile(str(spec_copy))
    spec_copy.write_text(spec_copy.read_text().replace("default: 0.8", "default: 0.7"))
    after = _compile(str(spec_copy))
    assert not isinstance(after, CachedPipeline) and after.definition != before.definition
    monkeypatch.setenv("SMP_NO_COMPILE_CACHE", "1")
    assert not isinstance(_compile(str(spec_copy)), CachedPipeline)


def test_the_key_covers_the_steps_the_package_and_the_settings(
    spec_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "repo"
    for part in ("steps/train.py", "pipelines/compiler/x.py"):
        (root / part).parent.mkdir(parents=True, exist_ok=True)
        (root / part).write_text("v1")
    monkeypatch.setattr(compile_cache, "ROOT", root)
    base = compile_cache.key(spec_copy, "{}")
    assert compile_cache.key(spec_copy, "{}") == base
    assert compile_cache.key(spec_copy, '{"region": "eu-west-1"}') != base
    for part in ("steps/train.py", "pipelines/compiler/x.py"):
        (root / part).write_text("v2")
        assert compile_cache.key(spec_copy, "{}") != base, part
        (root / part).write_text("v1")
    assert compile_cache.key(spec_copy, "{}") == base


def test_a_cached_compile_does_not_import_the_sdk(spec_copy: Path) -> None:
    code = (
        "import sys; from pipelines.cli import _compile; c = _compile(sys.argv[1]); "
        "print(type(c).__name__, 'sagemaker' in sys.modules)"
    )
    run = lambda: subprocess.run(  # noqa: E731
        [sys.executable, "-c", code, str(spec_copy)], cwd=spec_copy.parent, capture_output=True, text=True,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert run().stdout.split() == ["CompiledPipeline", "True"]
    assert run().stdout.split() == ["CachedPipeline", "False"]
    entries = list((spec_copy.parent / "build" / ".compile-cache").iterdir())
    assert len(entries) == 1 and json.loads((entries[0] / "meta.json").read_text())["name"] == "digits-quickstart"
