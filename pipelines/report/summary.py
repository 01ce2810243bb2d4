"""The closing summary printed when an execution ends (`local run`, `run`, `local describe`, `describe`):
a failure first (step, reason, the lines that explain it), then the gate's verdict, each training job's
or best trial's final metrics, the evaluation, where the model is, what was registered and deployed, and
where the report is."""

from __future__ import annotations

from typing import Any

from pipelines.report.view import RunView, gate_checks


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) and not isinstance(value, bool) else str(value)


def _metrics(values: dict[str, Any]) -> str:
    return " ".join(f"{k}={_number(v)}" for k, v in values.items())


def final_metrics(result: dict[str, Any]) -> dict[str, float]:
    return {m["MetricName"]: m["Value"] for m in result.get("FinalMetricDataList", [])}


def model_artifact(result: dict[str, Any]) -> str | None:
    """The model a training or tuning step produced (a tuning step's: its best training job's)."""
    for holder in (result, result.get("BestTrainingJob", {})):
        uri = holder.get("ModelArtifacts", {}).get("S3ModelArtifacts")
        if uri:
            return str(uri)
    return None


def failure_lines(view: RunView, tail_lines: list[str] | None, tail: int) -> list[str]:
    """The failing step, its reason, the first error its log holds (a torchrun job's failing rank's
    exception, which its own traceback follows) when the tail does not show it, then the tail."""
    failure = view.failure or {}
    if not failure:
        return []
    out = [f"step '{failure.get('step')}' failed: {failure.get('reason')}"]
    tail_lines = (tail_lines or [])[-tail:] if tail else []
    excerpt = failure.get("excerpt") or []
    if excerpt and not set(excerpt) <= set(tail_lines):
        out.append(f"--- the first error in {failure.get('log') or 'its log'}")
        out += [f"    {line}" for line in excerpt]
    if tail_lines:
        out.append(f"--- last {len(tail_lines)} lines of {failure.get('log') or 'its log'}")
        out += [f"    {line}" for line in tail_lines]
    return out


def lines(view: RunView) -> list[str]:
    """The summary after the failure block (`failure_lines`, printed first and to stderr on a failure)."""
    out: list[str] = []
    hits = sum(s.cache_hit for s in view.steps.values())
    took = f" in {view.elapsed:.1f}s" if view.elapsed is not None else ""
    out.append(f"execution {view.id} of {view.pipeline}: {view.status}{took} ({hits} cache hit(s))")
    for check in gate_checks(view):
        left = f"{check['left']} = {_number(check['left_value'])}" if check["left_value"] is not None else check["left"]
        right = (
            f"{check['right']} = {_number(check['right_value'])}"
            if check["right_value"] is not None
            else check["right"]
        )
        verdict = {True: "passed", False: "not passed", None: "not evaluated"}[check["outcome"]]
        out.append(f"gate '{check['display']}': {left} {check['op']} {right}: {verdict}")
    for name, step in view.steps.items():
        result = step.result or {}
        if step.status != "Succeeded":
            continue
        if step.type == "Training":
            out.append(f"{name}: training job {result.get('TrainingJobName')}: {_metrics(final_metrics(result))}")
        elif step.type == "Tuning":
            best = result.get("BestTrainingJob", {})
            objective = best.get("FinalHyperParameterTuningJobObjectiveMetric", {})
            trials = view.trials.get(name, [])
            record = next((t for t in trials if t.get("TrainingJobName") == best.get("TrainingJobName")), {})
            finals = {k: v[-1] for k, v in (record.get("Curves") or {}).items() if v}
            hps = ", ".join(f"{k}={_number(_float(v))}" for k, v in best.get("TunedHyperParameters", {}).items())
            counts = result.get("ObjectiveStatusCounters") or result.get("TrainingJobStatusCounters") or {}
            total = sum(v for v in counts.values() if isinstance(v, int)) or len(trials)
            out.append(
                f"{name}: best of {total} training job(s) {best.get('TrainingJobName')}: "
                f"{objective.get('MetricName')}={_number(objective.get('Value'))} ({hps})"
            )
            if finals:
                out.append(f"    final metrics: {_metrics(finals)}")
        if step.type in ("Training", "Tuning"):
            artifact = view.artifacts.get(name)
            if artifact:
                where = f"{artifact['path']} ({artifact['uri']})" if artifact.get("path") else artifact["uri"]
                out.append(f"    model: {where}")
        if name in view.evaluations:
            evaluation = view.evaluations[name]
            samples = evaluation.samples
            out.append(f"{name}: {_metrics(evaluation.metrics)}" + (f" on {samples} images" if samples else ""))
            if evaluation.predictions:
                out.append(f"    predictions: {evaluation.predictions}")
        if "ModelPackageArn" in result:
            version = result.get("ModelPackageVersion") or result["ModelPackageArn"].rsplit("/", 1)[-1]
            status = result.get("ModelApprovalStatus", "")
            out.append(f"registered: {result.get('ModelPackageGroupName', '')} version {version} ({status})".strip())
        if "EndpointStatus" in result or step.type == "Endpoint":
            url = f" at {result['Url']}" if result.get("Url") else ""
            out.append(f"endpoint: {result.get('EndpointName', name)} {result.get('EndpointStatus', '')}{url}")
    for name, step in view.steps.items():
        if step.cache_note:
            out.append(f"note: {name} was a cache hit although {step.cache_note}")
    if view.report:
        out.append(f"report: {view.report}")
    return out


def _float(text: Any) -> Any:
    try:
        return float(text)
    except (TypeError, ValueError):
        return text
