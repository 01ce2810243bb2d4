"""Seeing what a run did: the closing summary, the graph, the HTML report (parsed, and rendered by a real
browser), `latest`, `--json`, `logs --follow`, `local gc`, the root cause of a failed job, and the same
for SageMaker executions (moto for S3 and CloudWatch Logs, botocore's Stubber for SageMaker)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipelines.cli import main
from pipelines.local.runners.base import Job, RootCause, StepFailed
from pipelines.local.store import ObjectStore
from pipelines.report import graph
from tests.tools.datasets import write_digits
from tests.tools.quickstart import quickstart_command

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- one quickstart run


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from pipelines.local.serving import stop_all

    data = tmp_path_factory.mktemp("data")
    write_digits(data / "digits")
    root = tmp_path_factory.mktemp("runs")
    extra = ("Epochs=3", "TuningJobs=2", "AccuracyThreshold=0.3", "ModelApprovalStatus=PendingManualApproval")
    out = subprocess.run(quickstart_command(root, data, *extra), cwd=ROOT, capture_output=True, text=True)
    stop_all(root)
    assert out.returncode == 0, out.stderr[-3000:]
    [directory] = (root / "executions").iterdir()
    return {"root": root, "data": data, "stdout": out.stdout, "directory": directory, "id": directory.name}


def _evaluation_dir(quickstart: dict[str, Any]) -> Path:
    result = json.loads((quickstart["directory"] / "steps" / "evaluate" / "result.json").read_text())
    uri = result["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"]
    return ObjectStore(quickstart["root"] / "s3").path(uri)


def test_the_closing_summary_states_what_evaluation_json_and_the_records_hold(quickstart: dict[str, Any]) -> None:
    out = quickstart["stdout"]
    evaluation = json.loads((_evaluation_dir(quickstart) / "evaluation.json").read_text())
    recall = evaluation["metrics"]["weighted_recall"]["value"]
    assert f"gate 'Quality gate': evaluate weighted_recall = {recall:.4g} >= AccuracyThreshold = 0.3: passed" in out
    assert f"weighted_recall={recall:.4g}" in out and f"on {evaluation['samples']} images" in out
    tune = json.loads((quickstart["directory"] / "steps" / "tune" / "result.json").read_text())
    best = tune["BestTrainingJob"]
    objective = best["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
    assert f"tune: best of 2 training job(s) {best['TrainingJobName']}: val_weighted_recall={objective:.4g}" in out
    assert f"lr={float(best['TunedHyperParameters']['lr']):.4g}" in out
    assert best["ModelArtifacts"]["S3ModelArtifacts"] in out
    assert "registered: digits-quickstart version 1 (PendingManualApproval)" in out
    report = quickstart["directory"] / "report.html"
    assert f"report: {report}" in out and report.is_file()


def test_evaluate_writes_predictions_keyed_by_the_image_ids_preprocess_kept(quickstart: dict[str, Any]) -> None:
    evaluation = _evaluation_dir(quickstart)
    with open(evaluation / "predictions.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["image_id", "label_true", "label_predicted", "label_confidence"]
    staged = quickstart["directory"] / "steps/evaluate/sandbox/opt/ml/processing/input/test"
    assert [r["image_id"] for r in rows] == (staged / "image_ids.txt").read_text().splitlines()
    assert [int(r["label_true"]) for r in rows] == np.load(staged / "labels_label.npy").tolist()
    assert all(r["image_id"].startswith("digits:") and 0 < float(r["label_confidence"]) <= 1 for r in rows)
    matrix = json.loads((evaluation / "confusion_matrices.json").read_text())["label"]["matrix"]
    assert sum(matrix[i][i] for i in range(10)) == sum(r["label_true"] == r["label_predicted"] for r in rows)
    worst = np.load(evaluation / "worst_images.npz")
    assert worst["images"].shape == (32, 1, 16, 16) and set(worst["ids"]) <= {r["image_id"] for r in rows}


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.figures: list[str] = []
        self.thumbs: list[str] = []
        self.sections: list[str] = []
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("data-figure"):
            self.figures.append(str(a["data-figure"]))
        if a.get("data-image-id"):
            self.thumbs.append(str(a["data-image-id"]))
        if tag == "section":
            self.sections.append(str(a.get("id")))
        for key in ("src", "href"):
            if a.get(key):
                self.sources.append(str(a[key]))


def test_the_report_holds_the_graph_timeline_curves_trials_confusion_and_thumbnails(quickstart: dict[str, Any]) -> None:
    page = _Page()
    text = (quickstart["directory"] / "report.html").read_text()
    page.feed(text)
    assert page.sections == ["summary", "graph", "timeline", "curves", "children-tune", "evaluation-evaluate"]
    assert {"timeline", "curves", "children-tune", "confusion-label"} <= set(page.figures)
    assert len(page.thumbs) == 32
    assert all(s.startswith("data:image/png;base64,") for s in page.sources)  # self-contained: nothing fetched
    assert "<svg" in text and "<script" not in text
    assert "Preprocess digits" in text and "Quality gate" in text


def test_report_rewrites_it_and_latest_names_the_newest_execution(
    quickstart: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = str(quickstart["root"])
    out = tmp_path / "again.html"
    assert main(["report", "latest", "--root", root, "--out", str(out)]) == 0
    assert out.stat().st_size > 10_000 and f"wrote {out}" in capsys.readouterr().out
    assert main(["local", "describe", "latest", "--root", root, "--json"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["id"] == quickstart["id"] and any(line.startswith("gate ") for line in described["summary"])
    assert main(["local", "list", "--root", root, "--json"]) == 0
    assert [e["id"] for e in json.loads(capsys.readouterr().out)] == [quickstart["id"]]
    assert main(["local", "logs", "latest", "evaluate", "--root", root, "--follow"]) == 0
    assert "weighted_recall=" in capsys.readouterr().out  # a finished step: the whole log, then it returns


def test_a_real_browser_renders_the_report_offline_without_errors(quickstart: dict[str, Any], tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("SMP_REQUIRE_BROWSER"):
            pytest.fail("chromium is not installed, and SMP_REQUIRE_BROWSER says this run must render the report")
        pytest.skip("chromium is not installed here (apt-get install chromium); .ci/run installs it")
    shot = tmp_path / "report.png"
    result = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1280,2400",
            "--proxy-server=127.0.0.1:9",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--enable-logging=stderr",
            "--v=0",
            f"--screenshot={shot}",
            (quickstart["directory"] / "report.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB"))
    not_white = (pixels < 240).any(axis=2).mean()
    assert pixels.shape[:2] == (2400, 1280) and not_white > 0.03, not_white
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # text, figures and thumbnails, not a blank page


# --------------------------------------------------------------------------- graph


def test_the_graph_has_every_step_data_and_branch_edges(tmp_path: Path) -> None:
    assert main(["graph", "config/digits.yaml", "--out", str(tmp_path / "g.svg")]) == 0
    svg = (tmp_path / "g.svg").read_text()
    assert "Bayesian search (DDP)" in svg and (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"
    definition = json.loads((ROOT / "tests" / "golden" / "digits.json").read_text())
    g = graph.build(definition)
    assert g.edges["preprocess", "tune"]["relation"] == "data"
    assert g.edges["quality-gate", "register-RegisterModel"] == {"relation": "branch", "label": "if true"}
    assert g.edges["quality-gate", "quality-gate-failed"] == {"relation": "branch", "label": "else"}
    assert g.nodes["deploy"]["type"] == "Endpoint" and g.nodes["tune"]["label"] == "Bayesian search (DDP)"
    depth = graph.layers(g)
    assert depth["preprocess"] < depth["tune"] < depth["evaluate"] < depth["quality-gate"] < depth["deploy"]


def test_depends_on_edges_are_drawn_dashed() -> None:
    definition = {
        "Steps": [
            {"Name": "a", "Type": "Processing", "Arguments": {}},
            {"Name": "b", "Type": "Training", "Arguments": {}, "DependsOn": ["a"]},
        ]
    }
    assert graph.build(definition).edges["a", "b"]["relation"] == "depends"
    assert b"stroke-dasharray" in graph.render(definition, "svg")


# --------------------------------------------------------------------------- the root cause of a failure


TORCHRUN_OUTPUT = """[rank0]: Traceback (most recent call last):
[rank0]:   File "/opt/ml/code/train.py", line 3, in <module>
[rank0]:     import timm_missing
[rank0]: ModuleNotFoundError: No module named 'timm_missing'
E1125 12:00:00 torch/distributed/elastic/multiprocessing/api.py: failed (exitcode: 1) local_rank: 0
Traceback (most recent call last):
  File "<frozen runpy>", line 198, in _run_module_as_main
  File "torch/distributed/elastic/multiprocessing/errors/__init__.py", line 355, in wrapper
    raise ChildFailedError(
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
train.py FAILED
"""


def test_the_root_cause_is_the_failing_ranks_exception_not_torchruns_report() -> None:
    cause = RootCause()
    for line in TORCHRUN_OUTPUT.splitlines():
        cause.feed(line)
    assert cause.message == "ModuleNotFoundError: No module named 'timm_missing'"
    assert cause.excerpt[0] == "Traceback (most recent call last):" and len(cause.excerpt) == 4


def test_a_real_torchrun_failure_names_the_exception_and_the_script(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text("import timm_missing\n")
    lines: list[str] = []
    job = Job("train", "job", tmp_path, ObjectStore(tmp_path / "s3"), None, lines.append)  # type: ignore[arg-type]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", str(script)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with pytest.raises(StepFailed) as failed:
        job.run(cmd, env, tmp_path)
    assert failed.value.reason == (
        "AlgorithmError: ModuleNotFoundError: No module named 'timm_missing' (train.py exited with status 1)"
    )
    assert "import timm_missing" in "\n".join(failed.value.excerpt)
    assert len(lines) > len(failed.value.excerpt)  # torchrun's own report follows it in the log


# --------------------------------------------------------------------------- --json and gc


def test_validate_json_reports_the_pipeline_or_its_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "config/digits.yaml", "--json"]) == 0
    ok = json.loads(capsys.readouterr().out)
    assert (
        ok["ok"]
        and ok["pipeline"] == "digits-quickstart"
        and ok["steps"][0] == {"name": "preprocess", "kind": "processing"}
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "config" / "digits.yaml").read_text().replace("kind: tuning", "kind: tunning"))
    assert main(["validate", str(bad), "--json"]) == 2
    problems = json.loads(capsys.readouterr().out)["problems"]
    assert problems and problems[0]["file"] == str(bad) and problems[0]["line"] > 1


def _execution(root: Path, execution_id: str, outputs: dict[str, str], status: str = "Succeeded") -> None:
    directory = root / "executions" / execution_id
    record = {
        "id": execution_id,
        "pipeline": "p",
        "status": status,
        "started": f"2026-11-{execution_id[6:8]}T10:00:00+00:00",
        "ended": None,
        "parameters": {},
        "failure": None,
        "steps": {step: {"type": "Processing", "status": "Succeeded"} for step in outputs},
    }
    for step, uri in outputs.items():
        result = {
            "ProcessingOutputConfig": {"Outputs": [{"OutputName": "o", "S3Output": {"S3Uri": uri}}]},
            "ProcessingInputs": [{"S3Input": {"S3Uri": "s3://data/in/"}}],
        }
        (directory / "steps" / step).mkdir(parents=True)
        (directory / "steps" / step / "result.json").write_text(json.dumps(result))
        (directory / "steps" / step / "sandbox.bin").write_bytes(b"x" * 1000)
    (directory / "execution.json").write_text(json.dumps(record))


def test_gc_removes_old_executions_but_never_what_the_cache_registry_or_kept_runs_need(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipelines.local.registry import LocalRegistry

    root, data = tmp_path / "runs", tmp_path / "data"
    (data / "in").mkdir(parents=True)
    (data / "in" / "x.parquet").write_bytes(b"user data")
    store = ObjectStore(root / "s3", {"data": data})
    for name in ("old-free", "old-cached", "old-registered", "shared", "new", "running"):
        store.put_bytes(f"s3://b/{name}/part", b"y" * 500)
    _execution(
        root,
        "20261101-100000-aaaaaa",
        {"a": "s3://b/old-free/", "b": "s3://b/old-cached/", "c": "s3://b/old-registered/", "d": "s3://b/shared/"},
    )
    _execution(root, "20261102-100000-bbbbbb", {"a": "s3://b/running/"}, status="Executing")
    _execution(root, "20261120-100000-cccccc", {"a": "s3://b/new/", "d": "s3://b/shared/"})
    (root / "cache").mkdir()
    (root / "cache" / "k.json").write_text(
        json.dumps({"execution": "20261101-100000-aaaaaa", "outputs": ["s3://b/old-cached/"], "result": {}})
    )
    spec = {"Containers": [{"Image": "i", "ModelDataUrl": "s3://b/old-registered/part"}]}
    LocalRegistry(root).register("g", spec, "Approved")

    argv = ["local", "gc", "--keep", "1", "--root", str(root), "--mount", f"data={data}"]
    assert main([*argv, "--dry-run"]) == 0
    assert "would remove execution 20261101-100000-aaaaaa" in capsys.readouterr().out
    assert (root / "executions" / "20261101-100000-aaaaaa").exists()
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "1 execution(s), 1 output(s); 3 output(s) kept" in out
    assert sorted(p.name for p in (root / "executions").iterdir()) == [
        "20261102-100000-bbbbbb",
        "20261120-100000-cccccc",
    ]
    assert not store.path("s3://b/old-free/").exists()
    for kept in ("old-cached", "old-registered", "shared", "new", "running"):
        assert store.path(f"s3://b/{kept}/part").exists(), kept
    assert (data / "in" / "x.parquet").read_bytes() == b"user data"
    assert main(["local", "gc", "--root", str(root)]) == 2  # says what to keep, or does nothing
