"""What each step's image provides, and what its script imports: a script that imports a package its
image does not hold fails on SageMaker only (locally it runs in the project's environment), so `validate`
refuses it.

Three image roles, each with its declared packages (files in the repository, read here, never copied):

* the stock SageMaker PyTorch images provide what ``containers/<role>/stock.txt`` lists (import names);
* a training job installs ``steps/requirements.txt`` when it starts (SageMaker's training toolkit does);
* a processing job on the stock image installs ``steps/requirements-processing.txt`` when it starts (the
  compiled entry point, ``steps/processing_entry.sh``, does what the SDK's FrameworkProcessor does);
* the project's own images (``image: {custom: true}``) add ``containers/<role>/requirements.txt``.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines import layout

if TYPE_CHECKING:
    from pipelines.spec.base import Path_, ScriptStep
    from pipelines.spec.checks import Checks

TRAINING_REQUIREMENTS = "requirements.txt"  # the training toolkit installs this one, by this name
PROCESSING_REQUIREMENTS = "requirements-processing.txt"
PROCESSING_ENTRY = "processing_entry.sh"

# requirement names whose import name differs (the rest import as their name, '-' read as '_')
IMPORT_NAMES = {"pillow": "PIL", "scikit-learn": "sklearn", "pyyaml": "yaml", "opencv-python": "cv2",
                "opencv-python-headless": "cv2"}  # fmt: skip


def _names(path: Path, requirements: bool) -> frozenset[str]:
    """Import names a declaration file holds: requirement lines (``pyarrow>=14``) or import names."""
    try:
        text = path.read_text()
    except OSError:
        return frozenset()
    out = set()
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        if requirements:
            name = re.split(r"[\s<>=!~;\[@]", line, maxsplit=1)[0].lower()
            out.add(IMPORT_NAMES.get(name, name.replace("-", "_")))
        else:
            out.add(line)
    return frozenset(out)


def provided(step_kind: str, custom: bool) -> tuple[frozenset[str], str]:
    """(import names the step's image holds once the job started, what to call that image in a message)."""
    role = "inference" if step_kind == "inference" else "training"
    names = set(_names(layout.image_context(role) / "stock.txt", requirements=False))
    if custom:
        names |= _names(layout.image_context(role) / "requirements.txt", requirements=True)
        what = f"the project's {role} image (containers/{role}/)"
    elif step_kind in ("training", "tuning"):
        names |= _names(layout.script(TRAINING_REQUIREMENTS), requirements=True)
        what = f"the stock SageMaker PyTorch training image with steps/{TRAINING_REQUIREMENTS} installed"
    elif step_kind in ("processing", "evaluation"):
        names |= _names(layout.script(PROCESSING_REQUIREMENTS), requirements=True)
        what = f"the stock SageMaker PyTorch training image with steps/{PROCESSING_REQUIREMENTS} installed"
    else:
        what = f"the stock SageMaker PyTorch {role} image"
    return frozenset(names), what


@lru_cache(maxsize=64)
def third_party_imports(script: Path) -> frozenset[str]:
    """Top-level modules a step script imports, its sibling modules' imports included (``train.py``
    imports ``models``): neither the standard library nor the scripts themselves."""
    seen: set[Path] = set()
    found: set[str] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        try:
            tree = ast.parse(path.read_text())
        except (OSError, SyntaxError):
            continue
        optional = _guarded_imports(tree)
        for node in _statements(tree):
            if id(node) in optional:
                continue
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".", 1)[0]
                sibling = path.parent / f"{top}.py"
                if sibling.is_file():
                    todo.append(sibling)
                elif top not in sys.stdlib_module_names and top != "__future__":
                    found.add(top)
    return frozenset(found)


def _statements(tree: ast.AST) -> Iterator[ast.AST]:
    """Every statement, nested ones included (imports are statements: no need to visit the expressions, most
    of a module's nodes)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for name in ("body", "orelse", "finalbody", "handlers", "cases"):
            todo.extend(getattr(node, name, None) or [])


def _guarded_imports(tree: ast.AST) -> set[int]:
    """Imports inside ``try: ... except ImportError`` (or ModuleNotFoundError, or Exception, which holds
    both: `steps/tracking.py` goes on without MLflow): optional by the script's own account, so no image must
    provide them."""
    out: set[int] = set()
    for node in _statements(tree):
        if not isinstance(node, ast.Try):
            continue
        caught = {
            name.id if isinstance(name, ast.Name) else getattr(name, "attr", "")
            for handler in node.handlers
            for name in (handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type])
            if name is not None
        }
        if caught & {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}:
            imports = (n for statement in node.body for n in _statements(statement))
            out |= {id(n) for n in imports if isinstance(n, ast.Import | ast.ImportFrom)}
    return out


def missing(script: Path, step_kind: str, custom: bool) -> tuple[list[str], str]:
    """(modules ``script`` imports that the image of a ``step_kind`` step does not provide, the image's name)."""
    have, what = provided(step_kind, custom)
    return sorted(third_party_imports(script) - have), what


def fix_for(step_kind: str, custom: bool) -> str:
    if custom:
        return "add it to containers/training/requirements.txt (then make image-push)"
    if step_kind in ("training", "tuning"):
        return f"declare it in steps/{TRAINING_REQUIREMENTS} (the training toolkit installs it when the job starts)"
    return (
        f"declare it in steps/{PROCESSING_REQUIREMENTS} (installed when the job starts), or use "
        "image: {custom: true} with it in containers/training/requirements.txt"
    )


def check_script_imports(step: ScriptStep, checks: Checks, here: Path_) -> None:
    """A script that imports what its step's image does not provide fails on SageMaker only: refuse it."""
    path = layout.script(step.script)
    if not path.is_file():
        return  # said by check_script_options
    step_kind = str(getattr(step, "step_kind", "processing"))
    lacking, what = missing(path, step_kind, step.image.custom)
    if lacking:
        checks.add(
            (*here, "script"),
            f"steps/{step.script} imports {', '.join(lacking)}, which {what} does not provide",
            fix_for(step_kind, step.image.custom),
        )
