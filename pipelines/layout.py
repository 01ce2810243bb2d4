"""The repository's layout, in one place: where the specs, step scripts and image build contexts are, which
files make up the code SageMaker runs (packed into the code archives), which make up each image (its tag),
and so which files a compiled definition is made of (the compile cache key).

Everything else asks this module; no other module works out a repository path.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS = ROOT / "steps"  # the scripts SageMaker runs, packed into the code archives
CONTAINERS = ROOT / "containers"  # one build context per image role
PACKAGE = ROOT / "pipelines"
IMAGE_ROLES = ("training", "inference")
# what the code archives carry from steps/: scripts, their sibling modules, requirement files, entry scripts
CODE_SUFFIXES = (".py", ".txt", ".json", ".sh")
BUILD = Path("build")  # definitions, downloads and the compile cache, under the working directory


def code_files(steps: Path | None = None) -> dict[str, Path]:
    """Every file the code archives carry, by its name in the archive, sorted."""
    steps = steps or STEPS
    return {
        p.relative_to(steps).as_posix(): p
        for p in sorted(steps.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts and p.suffix in CODE_SUFFIXES
    }


def image_context(role: str, containers: Path | None = None) -> Path:
    """The directory `make image-build` sends to Docker for an image role (``training``, ``inference``)."""
    return (containers or CONTAINERS) / role


def image_files(role: str, containers: Path | None = None) -> list[Path]:
    """Every file of an image role's build context: the image's tag is their hash."""
    return sorted(p for p in image_context(role, containers).rglob("*") if p.is_file())


def script(name: str) -> Path:
    """A file of steps/ (a script a spec names, a requirements file)."""
    return STEPS / name


def scripts() -> list[str]:
    """The step scripts a spec may name."""
    return sorted(p.name for p in STEPS.glob("*.py"))


def compile_inputs(root: Path | None = None) -> list[Path]:
    """Every file of the repository a compiled definition depends on: the code it packs, the image
    contexts whose hashes tag the images it names, and the package that compiles and checks it."""
    root = root or ROOT
    steps, containers = root / "steps", root / "containers"
    files = list(code_files(steps).values())
    files += [p for role in IMAGE_ROLES for p in image_files(role, containers)]
    files += sorted(p for p in (root / "pipelines").rglob("*.py") if "__pycache__" not in p.parts)
    return files


def local_root(given: str | None = None) -> Path:
    """The local run root: ``--root``, else ``$SMP_LOCAL_ROOT``, else ``runs``."""
    return Path(given or os.environ.get("SMP_LOCAL_ROOT", "runs"))
