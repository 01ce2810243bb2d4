"""``Tuning``: a real hyperparameter search over the definition's ranges, each trial a training job run
through the `Training` runner (same sandbox, ``SM_*`` variables, torchrun, metric regexes, artifact).

Strategies come from optuna: ``Bayesian`` is its Gaussian-process sampler (SageMaker's Bayesian search is
GP-based), ``Random`` its random sampler, ``Grid`` every distinct combination of the categorical ranges (a
MaxNumberOfTrainingJobs other than their number is refused, as SageMaker refuses it), and ``Hyperband`` random
sampling with optuna's Hyperband pruner between MinResource and MaxResource epochs (given, or inferred from a
static ``epochs``-style hyperparameter as SageMaker infers it; they set the pruner's brackets, and a trial runs
the epochs its hyperparameters give it unless the pruner stops it). ``TrainingJobEarlyStoppingType: Auto`` is
SageMaker's documented median stopping rule. Both stopping rules read the objective per epoch, live from
the trial's output (the metric regex), and stop a trial's process group when it should stop.

The result is shaped like DescribeHyperParameterTuningJob plus the ``TrainingJobSummaries`` that
ListTrainingJobsForHyperParameterTuningJob returns, best first, so ``TrainingJobSummaries[0]`` and
``BestTrainingJob`` resolve as on SageMaker.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.files import write_atomic
from pipelines.limits import grid_jobs_problem, hyperband_max_resource
from pipelines.local.arns import arn
from pipelines.local.runners.base import CHILDREN_FILE, Job, Runner, StepFailed
from pipelines.local.runners.training import channel_uris, processes_for, run_training
from pipelines.report.view import child_record

# SageMaker caps names: tuning jobs at 32 characters, their training jobs at 63
TUNING_NAME_MAX = 32


class TuningRunner(Runner):
    # SageMaker: "jobs running inside tuning steps retry internally and will not retry
    # SageMaker.JOB_INTERNAL_ERROR, even if a retry policy is configured"
    never_retried = ("SageMaker.JOB_INTERNAL_ERROR",)
    cacheable = True

    def run(self, step: dict[str, Any], args: dict[str, Any], job: Job) -> dict[str, Any]:
        return Search(args, job).run()

    # SageMaker's documented cache key attributes for a tuning step, with the children of the training job
    # definition that count
    DEFINITION_ATTRIBUTES = ("AlgorithmSpecification", "HyperParameterRanges", "InputDataConfig",
                             "StaticHyperParameters", "TuningObjective")  # fmt: skip

    def cache_material(self, args: dict[str, Any]) -> Any:
        definition = args.get("TrainingJobDefinition") or {}
        return {
            "HyperParameterTuningJobConfig": args.get("HyperParameterTuningJobConfig"),
            "TrainingJobDefinition": {k: definition.get(k) for k in self.DEFINITION_ATTRIBUTES},
            "TrainingJobDefinitions": args.get("TrainingJobDefinitions"),
        }

    def input_uris(self, args: dict[str, Any]) -> list[str]:
        return channel_uris(args.get("TrainingJobDefinition") or {})



# --------------------------------------------------------------------------- the search space


@dataclass(frozen=True)
class Dimension:
    """One tuned hyperparameter: the optuna distribution it is searched in, and how a sample becomes its value."""

    name: str
    distribution: Any  # optuna.distributions.BaseDistribution
    to_value: Callable[[Any], Any]
    note: str = ""


def _scaling(scaling: str, name: str) -> tuple[bool, bool, str]:
    """(log, reverse, note) for a range's ScalingType, honoured as SageMaker documents it."""
    if scaling == "Logarithmic":
        return True, False, ""
    if scaling == "ReverseLogarithmic":
        return True, True, ""
    if scaling == "Auto":
        return False, False, f"'{name}': ScalingType Auto is searched on a linear scale locally"
    return False, False, ""


def search_space(ranges: dict[str, Any]) -> list[Dimension]:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    dims: list[Dimension] = []
    for r in ranges.get("ContinuousParameterRanges", []):
        low, high = float(r["MinValue"]), float(r["MaxValue"])
        log, reverse, note = _scaling(r.get("ScalingType", "Auto"), r["Name"])
        if reverse:
            # ReverseLogarithmic: 1 - value is log-uniform, so samples crowd towards the maximum
            dims.append(Dimension(r["Name"], FloatDistribution(1 - high, 1 - low, log=True), lambda y: 1 - y))
        else:
            dims.append(Dimension(r["Name"], FloatDistribution(low, high, log=log), float, note))
    for r in ranges.get("IntegerParameterRanges", []):
        low, high = int(r["MinValue"]), int(r["MaxValue"])
        log, _, note = _scaling(r.get("ScalingType", "Auto"), r["Name"])
        dims.append(Dimension(r["Name"], IntDistribution(low, high, log=log), int, note))
    for r in ranges.get("CategoricalParameterRanges", []):
        dims.append(Dimension(r["Name"], CategoricalDistribution(list(r["Values"])), str))
    return dims


def hyperparameter_text(value: Any) -> str:
    """How SageMaker passes a tuned value: a plain string ('0.0031', '4', 'adamw')."""
    if isinstance(value, float):
        return repr(value)
    return str(value)


# --------------------------------------------------------------------------- samplers and stopping rules


def make_sampler(strategy: str, dims: list[Dimension], seed: int, startup: int, log: Callable[[str], None]) -> Any:
    import optuna

    if strategy == "Bayesian":
        try:
            sampler = optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup, deterministic_objective=False)
            log(f"tuning: Bayesian search with a Gaussian-process sampler ({startup} random trial(s) first)")
            return sampler
        except ImportError as exc:  # the GP sampler needs torch and scipy
            log(f"tuning: the Gaussian-process sampler is unavailable ({exc}); falling back to TPE")
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)
    if strategy in ("Random", "Hyperband", "Grid"):  # Grid's combinations are enqueued, see `Search.run`
        return optuna.samplers.RandomSampler(seed=seed)
    raise StepFailed(f"ClientError: unknown tuning strategy {strategy!r}", "ClientError")


class MedianStoppingRule:
    """SageMaker's early stopping (``TrainingJobEarlyStoppingType: Auto``): stop a training job when its
    objective at the current epoch is worse than the median of the running averages of the objective of
    the earlier training jobs up to the same epoch. Needs `min_trials` earlier jobs with that epoch."""

    def __init__(self, min_trials: int = 3):
        self.min_trials = min_trials

    def prune(self, study: Any, trial: Any) -> bool:
        import optuna

        step = trial.last_step
        if step is None:
            return False
        value = trial.intermediate_values[step]
        averages = []
        for other in study.get_trials(deepcopy=False):
            if other.number == trial.number or other.number > trial.number:
                continue
            seen = [v for s, v in other.intermediate_values.items() if s <= step]
            if seen and max(other.intermediate_values) >= step:
                averages.append(sum(seen) / len(seen))
        if len(averages) < self.min_trials:
            return False
        median = statistics.median(averages)
        maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
        return value < median if maximize else value > median


def make_pruner(strategy: str, early_stopping: str, log: Callable[[str], None],
                resources: tuple[int, int] = (1, 1)) -> Any:  # fmt: skip
    """The stopping rule: Hyperband's (``resources``: its MinResource and MaxResource, in epochs), SageMaker's
    median rule for early stopping Auto, or none."""
    import optuna

    if strategy == "Hyperband":
        low, high = resources
        log(f"tuning: Hyperband stops trials from their per-epoch objective (optuna's Hyperband pruner, {low} to "
            f"{high} epochs)")  # fmt: skip
        return optuna.pruners.HyperbandPruner(min_resource=low, max_resource=max(low, high), reduction_factor=3)
    if early_stopping == "Auto":
        log("tuning: early stopping Auto: the median stopping rule on the per-epoch objective")

        class _Rule(optuna.pruners.BasePruner):
            rule = MedianStoppingRule()

            def prune(self, study: Any, trial: Any) -> bool:
                return self.rule.prune(study, trial)

        return _Rule()
    return optuna.pruners.NopPruner()


# --------------------------------------------------------------------------- the search


@dataclass
class Trial:
    number: int
    name: str
    params: dict[str, str]
    directory: Path
    status: str = "InProgress"  # Completed, Failed, Stopped
    objective: float | None = None
    curves: dict[str, list[float]] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    ended: float | None = None
    reason: str | None = None
    result: dict[str, Any] | None = None
    handle: Any = None  # the optuna trial this job evaluates
    excerpt: list[str] = field(default_factory=list)  # the log lines that explain a failure

    def record(self, metric: str) -> dict[str, Any]:
        """This training job as one of the tuning step's child jobs (what the views and the report read)."""
        return child_record(
            self.name, self.status, self.params, metric, self.objective, Curves=self.curves,
            Started=_iso(self.started), Ended=_iso(self.ended),
            DurationSeconds=round((self.ended or time.time()) - self.started, 3), FailureReason=self.reason,
            Log=str(self.directory / "log.txt"),
        )  # fmt: skip


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts is not None else None


class Search:
    def __init__(self, args: dict[str, Any], job: Job):
        self.args, self.job = args, job
        self.config = args["HyperParameterTuningJobConfig"]
        self.definition = args.get("TrainingJobDefinition") or (args.get("TrainingJobDefinitions") or [{}])[0]
        objective = self.config["HyperParameterTuningJobObjective"]
        self.metric, self.maximize = objective["MetricName"], objective["Type"] == "Maximize"
        limits = self.config.get("ResourceLimits", {})
        self.max_jobs = int(limits.get("MaxNumberOfTrainingJobs") or 0)  # unset on Grid: every combination
        self.strategy = self.config.get("Strategy", "Bayesian")
        self.early_stopping = self.config.get("TrainingJobEarlyStoppingType", "Off")
        self.target = (self.config.get("TuningJobCompletionCriteria") or {}).get("TargetObjectiveMetricValue")
        cores = os.cpu_count() or 1
        self.parallel = max(1, min(int(limits.get("MaxParallelTrainingJobs", 1)), cores))
        self.name = tuning_job_name(job.step_name, job.job_name)
        self.trials: list[Trial] = []
        self.lock = threading.Lock()
        self.cores = cores

    # ----------------------------------------------------------------- one trial

    def trial_arguments(self, trial: Trial) -> dict[str, Any]:
        """The CreateTrainingJob request SageMaker makes for one trial of this tuning job."""
        d = self.definition
        hyperparameters = dict(d.get("StaticHyperParameters", {}))
        hyperparameters |= trial.params
        hyperparameters["_tuning_objective_metric"] = self.metric
        args = {
            "TrainingJobName": trial.name,
            "AlgorithmSpecification": d.get("AlgorithmSpecification", {}),
            "HyperParameters": hyperparameters,
            "InputDataConfig": d.get("InputDataConfig", []),
            "OutputDataConfig": d.get("OutputDataConfig", {}),
            "ResourceConfig": d.get("HyperParameterTuningResourceConfig") or d.get("ResourceConfig", {}),
            "StoppingCondition": d.get("StoppingCondition", {}),
            "RoleArn": d.get("RoleArn"),
            "EnableManagedSpotTraining": d.get("EnableManagedSpotTraining", False),
            "Environment": d.get("Environment", {}),
        }
        if d.get("CheckpointConfig"):
            args["CheckpointConfig"] = d["CheckpointConfig"]
        return args

    def run_trial(self, trial: Trial, study_trial: Any) -> None:
        trial.directory.mkdir(parents=True, exist_ok=True)
        log_file = open(trial.directory / "log.txt", "a", buffering=1)  # noqa: SIM115 - closed below
        log_lock = threading.Lock()

        def log(line: str) -> None:
            with log_lock:
                log_file.write(line + "\n")

        request = self.trial_arguments(trial)
        resources = request["ResourceConfig"]
        distributed = json.loads(
            str(self.definition.get("StaticHyperParameters", {}).get("sagemaker_torch_distributed_enabled", "false"))
        )
        # the machine is shared by the trials running at once: each gets its share of the cores, unless
        # --nproc says how many processes a distributed job runs
        nproc = processes_for(resources.get("InstanceType", ""), self.job.nproc) if distributed else 1
        if not self.job.nproc:
            nproc = max(1, min(nproc, self.cores // self.parallel))
        threads = max(1, self.cores // (self.parallel * nproc))
        tjob = Job(
            self.job.step_name, trial.name, trial.directory, self.job.store, self.job.resolver, log,
            self.job.processes, self.job.lock, nproc, self.job.python, self.job.stopping,
            environment=self.job.environment | {"OMP_NUM_THREADS": str(threads)}, on_spawn=self.job.on_spawn,
        )  # fmt: skip
        tjob.fresh_sandbox()
        log(f"trial {trial.name}: {json.dumps(trial.params)} ({nproc} process(es) x {threads} thread(s))")
        epoch = 0

        def on_metric(name: str, value: float) -> None:
            nonlocal epoch
            trial.curves.setdefault(name, []).append(value)
            if name != self.metric or tjob.stopped:
                return
            epoch += 1
            study_trial.report(value, epoch)
            if study_trial.should_prune():
                log(f"trial {trial.name}: stopped early at epoch {epoch} ({self.metric}={value:g})")
                tjob.stop()

        try:
            trial.result = run_training({}, request, tjob, on_metric)
            (trial.directory / "result.json").write_text(json.dumps(trial.result, indent=2, sort_keys=True))
            final = {m["MetricName"]: m["Value"] for m in trial.result.get("FinalMetricDataList", [])}
            if self.metric not in final:
                raise StepFailed(f"the objective metric {self.metric} was never printed (check its regex)")
            trial.objective, trial.status = float(final[self.metric]), "Completed"
        except StepFailed as exc:
            trial.status = "Stopped" if tjob.stopped or self.job.stopping.is_set() else "Failed"
            trial.reason, trial.excerpt = exc.reason, exc.excerpt
            values = trial.curves.get(self.metric)
            trial.objective = values[-1] if trial.status == "Stopped" and values else None
        except Exception as exc:  # a bug in a trial must not take the search down
            trial.status, trial.reason = "Failed", f"{type(exc).__name__}: {exc}"
        finally:
            trial.ended = time.time()
            log(f"trial {trial.name}: {trial.status}" + (f" ({trial.reason})" if trial.reason else ""))
            log_file.close()
            (trial.directory / "trial.json").write_text(json.dumps(trial.record(self.metric), indent=2))

    # ----------------------------------------------------------------- the strategy's settings, as SageMaker's

    def grid(self, dims: list[Dimension]) -> list[dict[str, Any]]:
        """Grid: every distinct combination of the categorical values, each run once; a MaxNumberOfTrainingJobs
        other than their number is refused as SageMaker refuses it, never capped (`pipelines.limits`)."""
        if self.strategy != "Grid":
            return []
        if any(not hasattr(d.distribution, "choices") for d in dims):
            raise StepFailed("ClientError: Grid search takes categorical ranges only", "ClientError")
        problem = grid_jobs_problem(self.config)
        if problem:
            raise StepFailed(f"ClientError: {problem}", "ClientError")
        names = [d.name for d in dims]
        values = [list(dict.fromkeys(d.distribution.choices)) for d in dims]
        grid = [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]
        self.job.log(f"tuning: grid of {len(grid)} combination(s), each run once")
        self.max_jobs = len(grid)
        return grid

    def hyperband(self) -> tuple[int, int]:
        """Hyperband's (MinResource, MaxResource) in epochs; its settings refused as SageMaker refuses them."""
        if self.strategy != "Hyperband":
            return (1, 1)
        if self.early_stopping != "Off":
            raise StepFailed("ClientError: Hyperband stops trials itself: TrainingJobEarlyStoppingType must be Off",
                             "ClientError")  # fmt: skip
        most = hyperband_max_resource(self.config, self.definition.get("StaticHyperParameters") or {})
        if most is None:
            raise StepFailed("ClientError: Hyperband needs a MaxResource: none is given (HyperbandStrategyConfig) and "
                             "no static epochs hyperparameter holds one", "ClientError")  # fmt: skip
        given = (self.config.get("StrategyConfig") or {}).get("HyperbandStrategyConfig") or {}
        return int(given.get("MinResource") or 1), most

    # ----------------------------------------------------------------- the loop

    def run(self) -> dict[str, Any]:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        dims = search_space(self.config.get("ParameterRanges", {}))
        if not dims:
            raise StepFailed("ClientError: the tuning job has no parameter ranges", "ClientError")
        for d in dims:
            if d.note:
                self.job.log(f"note: {d.note}")
        grid = self.grid(dims)
        resources = self.hyperband()
        self.max_jobs = self.max_jobs or 1
        self.parallel = min(self.parallel, self.max_jobs)
        seed = int(self.config.get("RandomSeed", int(hashlib.sha256(self.name.encode()).hexdigest()[:8], 16)))
        startup = min(10, max(2, self.max_jobs // 3))
        study = optuna.create_study(
            direction="maximize" if self.maximize else "minimize",
            sampler=make_sampler(self.strategy, dims, seed, startup, self.job.log),
            pruner=make_pruner(self.strategy, self.early_stopping, self.job.log, resources),
        )
        for params in grid[: self.max_jobs]:
            study.enqueue_trial(params)
        self.job.log(
            f"tuning job {self.name}: {self.strategy}, up to {self.max_jobs} training job(s), {self.parallel} at once "
            f"(MaxParallelTrainingJobs {self.config.get('ResourceLimits', {}).get('MaxParallelTrainingJobs', 1)}, "
            f"{self.cores} core(s)); objective {self.config['HyperParameterTuningJobObjective']['Type']} {self.metric}"
        )
        started = time.time()
        futures: dict[Future[None], Trial] = {}
        with ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="trial") as pool:
            while True:
                while (
                    len(futures) < self.parallel
                    and len(self.trials) < self.max_jobs
                    and not self.job.stopping.is_set()
                    and not self._target_reached()
                ):
                    future, trial = self._launch(study, dims, pool)
                    futures[future] = trial
                if not futures:
                    break
                done, _ = wait(list(futures), return_when=FIRST_COMPLETED)
                for future in done:
                    trial = futures.pop(future)
                    future.result()
                    self._tell(study, trial)
        if self.job.stopping.is_set():
            raise StepFailed("Stopped: the tuning job was stopped", "Stopped")
        return self.result(started)

    def _launch(self, study: Any, dims: list[Dimension], pool: ThreadPoolExecutor) -> tuple[Future[None], Trial]:
        study_trial = study.ask({d.name: d.distribution for d in dims})
        number = len(self.trials) + 1
        suffix = hashlib.sha256(f"{self.name}-{number}".encode()).hexdigest()[:8]
        name = f"{self.name}-{number:03d}-{suffix}"
        params = {d.name: hyperparameter_text(d.to_value(study_trial.params[d.name])) for d in dims}
        trial = Trial(number, name, params, self.job.directory / "trials" / name, handle=study_trial)
        self.trials.append(trial)
        self.job.log(f"trial {name} started: {json.dumps(params)}")
        return pool.submit(self.run_trial, trial, study_trial), trial

    def _tell(self, study: Any, trial: Trial) -> None:
        import optuna

        study_trial = trial.handle
        if trial.status == "Completed":
            study.tell(study_trial, trial.objective)
        elif trial.status == "Stopped" and self.job.stopping.is_set() is False:
            study.tell(study_trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(study_trial, state=optuna.trial.TrialState.FAIL)
        value = f" {self.metric}={trial.objective:g}" if trial.objective is not None else ""
        self.job.log(f"trial {trial.name} {trial.status}{value}" + (f": {trial.reason}" if trial.reason else ""))
        done = [t for t in self.trials if t.ended is not None]
        leader = self.ranked()[0]
        best = f", best {self.metric}={leader.objective:g}" if leader.status == "Completed" else ""
        self.job.progress(f"{len(done)}/{self.max_jobs} trials{best}")
        # every trial so far, for `local describe` and reports (rewritten as each one ends)
        trials = [t.record(self.metric) for t in self.trials]
        write_atomic(self.job.directory / CHILDREN_FILE, json.dumps(trials, indent=2))

    def _target_reached(self) -> bool:
        if self.target is None:
            return False
        best = [t.objective for t in self.trials if t.status == "Completed" and t.objective is not None]
        if not best:
            return False
        value = max(best) if self.maximize else min(best)
        reached = value >= float(self.target) if self.maximize else value <= float(self.target)
        if reached:
            self.job.log(f"tuning: the target objective value {self.target} was reached; no more training jobs")
        return reached

    # ----------------------------------------------------------------- the Describe-shaped result

    def ranked(self) -> list[Trial]:
        """Completed jobs best first, then the rest in the order they started (as the List call sorts by
        final objective value)."""

        def key(t: Trial) -> tuple[int, float, int]:
            if t.status == "Completed" and t.objective is not None:
                return (0, -t.objective if self.maximize else t.objective, t.number)
            return (1, 0.0, t.number)

        return sorted(self.trials, key=key)

    def summary(self, trial: Trial) -> dict[str, Any]:
        out: dict[str, Any] = {
            "TrainingJobName": trial.name,
            "TrainingJobArn": arn("training-job", trial.name),
            "TuningJobName": self.name,
            "CreationTime": _iso(trial.started),
            "TrainingStartTime": _iso(trial.started),
            "TrainingEndTime": _iso(trial.ended),
            "TrainingJobStatus": trial.status,
            "TunedHyperParameters": trial.params,
            "ObjectiveStatus": "Succeeded" if trial.objective is not None else "Failed",
        }
        if trial.objective is not None:
            out["FinalHyperParameterTuningJobObjectiveMetric"] = {"MetricName": self.metric, "Value": trial.objective}
        if trial.reason:
            out["FailureReason"] = trial.reason
        return out

    def result(self, started: float) -> dict[str, Any]:
        completed = [t for t in self.trials if t.status == "Completed"]
        if not completed:
            reasons = "; ".join(f"{t.name}: {t.reason}" for t in self.trials)
            excerpt = next((t.excerpt for t in self.trials if t.excerpt), [])
            raise StepFailed(f"every training job of tuning job {self.name} failed ({reasons})", excerpt=excerpt)
        ranked = self.ranked()
        best = ranked[0]
        counts = {s: sum(t.status == s for t in self.trials) for s in ("Completed", "Failed", "Stopped")}
        best_summary = self.summary(best)
        assert best.result is not None
        best_summary["ModelArtifacts"] = best.result["ModelArtifacts"]  # kept for the cache; not in the API shape
        return {
            "HyperParameterTuningJobName": self.name,
            "HyperParameterTuningJobArn": arn("hyper-parameter-tuning-job", self.name),
            "HyperParameterTuningJobConfig": self.config,
            "TrainingJobDefinition": self.definition,
            "HyperParameterTuningJobStatus": "Completed",
            "CreationTime": _iso(started),
            "HyperParameterTuningEndTime": _iso(time.time()),
            "TrainingJobStatusCounters": {
                "Completed": counts["Completed"],
                "InProgress": 0,
                "RetryableError": 0,
                "NonRetryableError": counts["Failed"],
                "Stopped": counts["Stopped"],
            },
            "ObjectiveStatusCounters": {
                "Succeeded": sum(t.objective is not None for t in self.trials),
                "Pending": 0,
                "Failed": sum(t.objective is None for t in self.trials),
            },
            "BestTrainingJob": best_summary,
            "TrainingJobSummaries": [self.summary(t) for t in ranked],
        }


def tuning_job_name(step_name: str, job_name: str) -> str:
    """A name within SageMaker's 32 characters, unique per execution and step."""
    digest = hashlib.sha256(job_name.encode()).hexdigest()[:8]
    return f"{step_name[: TUNING_NAME_MAX - 9].rstrip('-')}-{digest}"
