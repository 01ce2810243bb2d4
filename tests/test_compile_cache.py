"""A rerun reuses the compiled definition while nothing it is made of changed, without importing the SDK."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import compile_cache, layout
from pipelines.cli import compile_spec as _compile
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


def test_the_key_covers_every_packed_file_the_images_the_package_and_the_settings(
    spec_copy: Path, tmp_path: Path
) -> None:
    root = tmp_path / "repo"
    parts = ("steps/train.py", "steps/requirements-processing.txt", "steps/processing_entry.sh",
             "steps/config.json", "containers/training/requirements.txt", "containers/inference/Dockerfile",
             "pipelines/compiler/x.py")  # fmt: skip
    for part in parts:
        (root / part).parent.mkdir(parents=True, exist_ok=True)
        (root / part).write_text("v1")
    base = compile_cache.key(spec_copy, "{}", root)
    assert compile_cache.key(spec_copy, "{}", root) == base
    assert compile_cache.key(spec_copy, '{"region": "eu-west-1"}', root) != base
    for part in parts:
        (root / part).write_text("v2")
        assert compile_cache.key(spec_copy, "{}", root) != base, part
        (root / part).write_text("v1")
    assert compile_cache.key(spec_copy, "{}", root) == base
    (root / "steps" / "notes.md").write_text("not packed, not in any image")
    assert compile_cache.key(spec_copy, "{}", root) == base


@pytest.fixture
def repo_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The steps and image contexts copied, and the layout pointed at the copy (the package stays)."""
    root = tmp_path / "repo"
    for part in ("steps", "containers"):
        shutil.copytree(ROOT / part, root / part, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "pipelines").mkdir()
    monkeypatch.setattr(layout, "ROOT", root)
    monkeypatch.setattr(layout, "STEPS", root / "steps")
    monkeypatch.setattr(layout, "CONTAINERS", root / "containers")
    return root


@pytest.mark.parametrize(
    "edited", ["steps/requirements-processing.txt", "steps/processing_entry.sh", "containers/training/requirements.txt"]
)
def test_editing_a_packed_or_image_file_misses_the_cache(
    spec_copy: Path, repo_copy: Path, monkeypatch: pytest.MonkeyPatch, edited: str
) -> None:
    monkeypatch.chdir(spec_copy.parent)
    first = _compile(str(spec_copy))
    assert isinstance(_compile(str(spec_copy)), CachedPipeline)
    path = repo_copy / edited
    path.write_text(path.read_text() + "\n# edited\n")
    again = _compile(str(spec_copy))
    assert not isinstance(again, CachedPipeline), edited
    if edited.startswith("steps/"):  # what is packed is the new file: a new code digest
        assert again.code.digest != first.code.digest
        assert any(data.endswith(b"# edited\n") for data in again.uploads().values())


def test_a_cached_compile_does_not_import_the_sdk(spec_copy: Path) -> None:
    code = (
        "import sys; from pipelines.cli import compile_spec as _compile; c = _compile(sys.argv[1]); "
        "print(type(c).__name__, 'sagemaker' in sys.modules)"
    )
    run = lambda: subprocess.run(  # noqa: E731
        [sys.executable, "-c", code, str(spec_copy)], cwd=spec_copy.parent, capture_output=True, text=True,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert run().stdout.split() == ["CompiledPipeline", "True"]
    assert run().stdout.split() == ["CachedPipeline", "False"]
    entries = [p for p in (spec_copy.parent / "build" / ".compile-cache").iterdir() if p.is_dir()]
    assert len(entries) == 1 and json.loads((entries[0] / "meta.json").read_text())["name"] == "digits-quickstart"
    assert (spec_copy.parent / "build" / ".compile-cache" / "image-uris.json").is_file()  # the SDK's lookups, kept
