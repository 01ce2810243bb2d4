"""The HTML report's cost: the quickstart's (target < 2 s) and a flagship-sized run's (50,000 test images,
heads of 168/11/7 classes, 8 tuning trials of 30 epochs; target < 10 s)."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "report"


def _timed(fn, repeats: int = 3) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def flagship_view(directory: Path):  # type: ignore[no-untyped-def]
    from pipelines.report.view import Evaluation, RunView, StepView, child_record

    rng = np.random.default_rng(0)
    definition = json.loads((ROOT / "tests" / "golden" / "bengali.json").read_text())
    heads = {"grapheme_root": 168, "vowel_diacritic": 11, "consonant_diacritic": 7}
    n = 50_000
    evaluation = directory / "evaluation"
    evaluation.mkdir(parents=True, exist_ok=True)
    metrics, matrices = {}, {}
    for head, k in heads.items():
        truth = rng.integers(0, k, n)
        predicted = np.where(rng.random(n) < 0.8, truth, rng.integers(0, k, n))
        matrices[head] = {
            "labels": list(range(k)),
            "matrix": np.bincount(truth * k + predicted, minlength=k * k).reshape(k, k).tolist(),
        }
        metrics[f"recall_{head}"] = {"value": float((truth == predicted).mean())}
    metrics["weighted_recall"] = {"value": 0.8}
    (evaluation / "evaluation.json").write_text(json.dumps({"metrics": metrics, "samples": n}))
    (evaluation / "confusion_matrices.json").write_text(json.dumps(matrices))
    np.savez_compressed(
        evaluation / "worst_images.npz",
        images=rng.integers(0, 255, (32, 1, 137, 236), dtype=np.uint8),
        ids=np.asarray([f"Train_{i}" for i in range(32)]),
        true=rng.integers(0, 7, (32, 3)),
        predicted=rng.integers(0, 7, (32, 3)),
        confidence=rng.random((32, 3)),
        heads=np.asarray(list(heads)),
    )
    start = time.time() - 4 * 3600
    steps, trials, curves = {}, [], {}
    for i, step in enumerate(definition["Steps"]):
        steps[step["Name"]] = StepView(
            step["Name"], step["Type"], "Succeeded", step.get("DisplayName"), start + i * 600, start + i * 600 + 500
        )
    for t in range(8):
        name = f"tune-abc-{t + 1:03d}-0000"
        curves[name] = {m: list(rng.random(30)) for m in ("train_loss", "val_loss", "val_weighted_recall", "lr")}
        parameters = {"lr": str(10 ** rng.uniform(-4, -2)), "dropout": str(rng.random() / 2)}
        trials.append(
            child_record(
                name, "Completed", parameters, "val_weighted_recall", float(rng.random()),
                Started=start + 600 + t * 300, Ended=start + 900 + t * 300, DurationSeconds=300.0, Curves=curves[name],
            )  # fmt: skip
        )
    tuning = next(s["Name"] for s in definition["Steps"] if s["Type"] == "Tuning")
    evaluate = next(
        s["Name"]
        for s in definition["Steps"]
        if s["Type"] == "Processing" and "valuat" in s.get("DisplayName", s["Name"])
    )
    return RunView(
        "bengali-grapheme",
        "flagship",
        "Succeeded",
        definition,
        {"Epochs": 30},
        steps,
        start,
        start + 4 * 3600,
        curves=curves,
        children={tuning: trials},
        evaluations={evaluate: Evaluation(evaluate, evaluation)},
    )


def bench_report(args: argparse.Namespace) -> str:
    sys.path.insert(0, str(ROOT))
    from pipelines.local.view import load_view
    from pipelines.report.html import write_report
    from tests.tools.datasets import write_digits
    from tests.tools.quickstart import quickstart_command

    OUT.mkdir(parents=True, exist_ok=True)
    data, root = OUT / "data", OUT / "quickstart-root"
    if not (data / "digits").exists():
        write_digits(data / "digits")
    if not (root / "executions").exists():
        command = quickstart_command(root, data, "ModelApprovalStatus=PendingManualApproval")
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    execution = sorted((root / "executions").iterdir())[-1].name
    view = load_view(root, execution)
    quick = _timed(lambda: write_report(view, OUT / "quickstart.html"))
    t0 = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines",
            "report",
            execution,
            "--root",
            str(root),
            "--out",
            str(OUT / "quickstart-cli.html"),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    cli = time.perf_counter() - t0
    big = flagship_view(OUT / "flagship")
    flagship = _timed(lambda: write_report(big, OUT / "flagship.html"))
    rows = [
        ("quickstart (4 trials, 269 test images, one 10-class head)", quick, 2.0, (OUT / "quickstart.html")),
        (
            "quickstart, `python -m pipelines report` end to end (Python start and imports included)",
            cli,
            2.0,
            OUT / "quickstart-cli.html",
        ),
        (
            "flagship-sized (8 trials x 30 epochs, 50,000 test images, heads 168/11/7)",
            flagship,
            10.0,
            OUT / "flagship.html",
        ),
    ]
    lines = ["| report | seconds | target | size |", "|---|---|---|---|"]
    for label, seconds, target, path in rows:
        ok = "met" if seconds < target else "MISSED"
        lines.append(f"| {label} | {seconds:.2f} | < {target:g} s ({ok}) | {path.stat().st_size / 1e6:.2f} MB |")
    return "Writing `report.html` (median of 3 in-process writes; the CLI row is one run).\n\n" + "\n".join(lines)
