"""The inner loop against Kubeflow Pipelines' local runner, paired: ``python bench/run.py --only peers``.

A chain of N tiny steps (each reads its predecessor's output and writes its own; the first writes one) runs as
a user runs it: ``python -m pipelines local run SPEC`` in a fresh process, and KFP's ``SubprocessRunner``
(``use_venv=False``, components with ``install_kfp_package=False``: no per-step install) in a fresh process of
its own. KFP is installed in a virtualenv of its own (`KFP_VERSION`), for this benchmark only. Each
measurement alternates the two tools (A B A B), and each figure is the median of `ROUNDS` pairs:

* first run: the compile cache emptied (every lookup it holds too) and a new run root; for KFP a new pipeline
  root;
* cached rerun: ours again on the same run root (every step a cache hit); KFP again (its local runner caches
  nothing, so it runs every step again);
* peak memory: the largest ``ru_maxrss`` of the command and the processes it waited for.

Ours runs with ``SMP_TRACKING=off``: KFP's local runner records nothing, and the MLflow writer a local run starts
in the background by default would load the machine under the runs measured after it.

The project's spec needs its script under ``steps/``: the benchmark runs on a copy of the repository
(``bench/out/peers-repo``) with ``steps/chain.py`` added, as a contributor's checkout would hold it.

``PEERS_BASELINE=REV`` also runs this commit's first runs paired with those of an earlier commit (its code from
``git archive REV``): this machine's speed moves between minutes, and moves the two tools differently (ours
compiles in a second process), so a change of ours is best read against our own earlier code, in one run.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
KFP_VERSION = "2.17.0"
ROUNDS = 9
BASELINE_PAIRS = 20
LENGTHS = (3, 10)

CHAIN_SCRIPT = '''
"""One link of the benchmark's chain: read the predecessor's number (if any), write the next."""
import argparse
import pathlib

parser = argparse.ArgumentParser()
parser.add_argument("--data")
parser.add_argument("--out", required=True)
args = parser.parse_args()
n = int((pathlib.Path(args.data) / "n.txt").read_text()) if args.data else 0
(pathlib.Path(args.out) / "n.txt").write_text(f"{n + 1}\\n")
'''

KFP_CHAIN = '''
import sys
from kfp import dsl, local

N, ROOT = int(sys.argv[1]), sys.argv[2]
local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=ROOT)


@dsl.component(install_kfp_package=False)
def first(out: dsl.Output[dsl.Dataset]):
    with open(out.path, "w") as f:
        f.write("1\\n")


@dsl.component(install_kfp_package=False)
def link(data: dsl.Input[dsl.Dataset], out: dsl.Output[dsl.Dataset]):
    with open(data.path) as f:
        n = int(f.read())
    with open(out.path, "w") as f:
        f.write(f"{n + 1}\\n")


@dsl.pipeline
def chain() -> dsl.Dataset:
    task = first()
    for _ in range(N - 1):
        task = link(data=task.outputs["out"])
    return task.outputs["out"]


chain()
'''


def chain_spec(n: int) -> str:
    """The project's spec of the chain: N processing steps, each cached, each reading the one before."""
    steps = []
    for k in range(1, n + 1):
        inputs = f"    inputs: {{data: s{k - 1}.out}}\n" if k > 1 else ""
        steps.append(f"  - name: s{k}\n    kind: processing\n    script: chain.py\n"
                     f"    instance: {{type: ml.m5.large}}\n{inputs}    outputs: [out]\n"
                     "    cache: {enabled: true, expire_after: P30D}\n")  # fmt: skip
    return f"name: chain-{n}\ndescription: A chain of {n} tiny steps.\n\nsteps:\n" + "".join(steps)


def repository(destination: Path, revision: str | None = None) -> Path:
    """A copy of the repository's code with the chain's script added (its compile inputs: package, steps,
    containers): the working tree's, or a git revision's."""
    shutil.rmtree(destination, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    if revision is None:
        for part in ("pipelines", "steps", "containers"):
            shutil.copytree(ROOT / part, destination / part, ignore=ignore)
    else:
        destination.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "pipelines", "steps", "containers"],
                                 check=True, capture_output=True).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(destination)], input=archive, check=True)
    (destination / "steps" / "chain.py").write_text(CHAIN_SCRIPT.lstrip())
    for n in LENGTHS:
        (destination / f"chain-{n}.yaml").write_text(chain_spec(n))
    # its bytecode written once, as an installed package has it (KFP's came with its pip install): with
    # PYTHONDONTWRITEBYTECODE set, every run would otherwise compile the package's sources again
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(destination / "pipelines")], check=True)
    return destination


def kfp_python() -> Path:
    """The benchmark's own virtualenv with Kubeflow Pipelines (made once, under bench/out/)."""
    venv = OUT / "kfp-venv"
    python = venv / "bin" / "python"
    check = [str(python), "-c", f"import kfp, sys; sys.exit(kfp.__version__ != {KFP_VERSION!r})"]
    if not python.exists() or subprocess.run(check, capture_output=True).returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"kfp=={KFP_VERSION}"], check=True)
    return python


def _ours(repo: Path, n: int, root: Path, measured: Callable) -> tuple[float, float]:
    # no MLflow record: KFP's runner keeps none, and the background writer a run starts by default (about 2.5 s
    # of CPU after the command returned, `bench tracking`) would load the machine under the next measured run
    env = {"PYTHONPATH": str(repo), "SMP_TRACKING": "off"}
    wall, rss, _ = measured([sys.executable, "-m", "pipelines", "local", "run", f"chain-{n}.yaml", "--root",
                             str(root)], env=env, cwd=repo)  # fmt: skip
    return wall, rss


def _kfp(python: Path, script: Path, n: int, root: Path, measured: Callable) -> tuple[float, float]:
    wall, rss, _ = measured([str(python), str(script), str(n), str(root)])
    return wall, rss


def bench_baseline(repo: Path, revision: str, measured: Callable) -> list[str]:
    """This commit's first runs against an earlier commit's (``PEERS_BASELINE=REV``), paired (A B A B, the
    order swapped every pair), `BASELINE_PAIRS` pairs per chain: the per-pair ratio's median and quartiles."""
    base = repository(OUT / "peers-baseline", revision)
    rows = []
    for n in LENGTHS:
        ratios, walls = [], {"this": [], "base": []}
        for r in range(BASELINE_PAIRS):
            pair = {}
            for label, tree in (("this", repo), ("base", base)) if r % 2 == 0 else (("base", base), ("this", repo)):
                shutil.rmtree(tree / "build", ignore_errors=True)
                root = OUT / f"peers-{label}-{n}-{r}"
                shutil.rmtree(root, ignore_errors=True)
                pair[label] = _ours(tree, n, root, measured)[0]
                walls[label].append(pair[label])
            ratios.append(pair["this"] / pair["base"])
        q1, _, q3 = statistics.quantiles(ratios, n=4)
        rows.append(f"| {n}-step chain, first run | {statistics.median(walls['this']):.2f} | "
                    f"{statistics.median(walls['base']):.2f} | {statistics.median(ratios):.3f} ({q1:.3f}-{q3:.3f}) |")
    shutil.rmtree(base, ignore_errors=True)
    return ["", f"This commit against `{revision}` (`PEERS_BASELINE={revision}`), first runs paired, {BASELINE_PAIRS} "
            "pairs per row; the ratio is the median of the per-pair ratios (quartiles in brackets):", "",
            "| run | this commit (s) | baseline (s) | this / baseline |", "|---|---:|---:|---:|", *rows]  # fmt: skip


def bench_peers(args: object, measured: Callable) -> str:
    repo = repository(OUT / "peers-repo")
    python = kfp_python()
    script = OUT / "kfp_chain.py"
    script.write_text(textwrap.dedent(KFP_CHAIN).lstrip())
    results: dict[tuple[str, int, str], list[tuple[float, float]]] = {}
    for n in LENGTHS:
        for r in range(ROUNDS):
            # first runs: our compile cache emptied, new roots for both
            shutil.rmtree(repo / "build", ignore_errors=True)
            ours_root, kfp_root = OUT / f"peers-ours-{n}-{r}", OUT / f"peers-kfp-{n}-{r}"
            for root in (ours_root, kfp_root):
                shutil.rmtree(root, ignore_errors=True)
            results.setdefault(("ours", n, "first"), []).append(_ours(repo, n, ours_root, measured))
            results.setdefault(("kfp", n, "first"), []).append(_kfp(python, script, n, kfp_root, measured))
            # reruns: ours on the same root (all cache hits); KFP again (no local cache)
            results.setdefault(("ours", n, "rerun"), []).append(_ours(repo, n, ours_root, measured))
            results.setdefault(("kfp", n, "rerun"), []).append(_kfp(python, script, n, kfp_root, measured))
    baseline = os.environ.get("PEERS_BASELINE")
    extra = bench_baseline(repo, baseline, measured) if baseline else []
    for root in OUT.glob("peers-*-*-*"):
        shutil.rmtree(root, ignore_errors=True)
    return "\n".join([_table(results), *extra])


def _table(results: dict[tuple[str, int, str], list[tuple[float, float]]]) -> str:
    def median(tool: str, n: int, run: str, index: int) -> float:
        return statistics.median(x[index] for x in results[(tool, n, run)])

    rows = []
    for n in LENGTHS:
        for run, label in (("first", "first run (compile cache empty)"), ("rerun", "fully cached rerun")):
            ours, kfp = median("ours", n, run, 0), median("kfp", n, run, 0)
            rows.append(f"| {n}-step chain, {label} | {ours:.2f} | {kfp:.2f} | {ours / kfp:.2f}x |")
    memory = (f"Peak memory of a first run (3 steps): ours {median('ours', 3, 'first', 1):.0f} MiB, KFP "
              f"{median('kfp', 3, 'first', 1):.0f} MiB (target: ours at most 150 MiB).")  # fmt: skip
    return "\n".join([
        f"A chain of tiny steps, ours (`python -m pipelines local run`) against Kubeflow Pipelines {KFP_VERSION}'s "
        "local `SubprocessRunner` (`use_venv=False`, components with `install_kfp_package=False`), each a fresh "
        f"process, run paired (A B A B), {ROUNDS} pairs per row, medians (`bench/peers.py` says what each run "
        "holds). KFP runs from its own virtualenv (`bench/out/kfp-venv`); ours with `SMP_TRACKING=off` (KFP "
        "records nothing either).",
        "",
        "| run | ours (s) | KFP (s) | ours / KFP |",
        "|---|---:|---:|---:|",
        *rows,
        "",
        memory,
        f"Python {sys.version.split()[0]}; ours with SageMaker SDK {_version('sagemaker')}.",
    ])


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)

