"""What the command groups share: how a command is declared beside its function (`Group`), the options
written once (`ROOT`, `MOUNT`, `JSON`...), the one user-error class the entry point catches (`UsageError`,
a `UserError`), and the helpers several groups call: compiling a spec, typing overrides, the run root."""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines import layout
from pipelines.errors import UserError

BUILD = layout.BUILD
DATA_MOUNT = "sm-pipelines-data=data"  # the example data's bucket, served from ./data


class UsageError(UserError):
    """Bad input on the command line: printed as one message, exit status 2."""


# --------------------------------------------------------------------------- declaring commands


@dataclass(frozen=True)
class Option:
    """One argparse argument, declared once and given to every command that takes it."""

    flags: tuple[str, ...]
    kwargs: dict[str, Any]

    def add(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(*self.flags, **self.kwargs)


def option(*flags: str, **kwargs: Any) -> Option:
    return Option(flags, kwargs)


Handler = Callable[[argparse.Namespace], int]


@dataclass
class Group:
    """Commands declared beside their functions (`command`), added to the parser by `register`: at the top
    level (``name=None``: ``python -m pipelines validate``) or under a group (``python -m pipelines local run``)."""

    name: str | None = None
    help: str | None = None
    commands: list[tuple[str, str, tuple[Option, ...], Handler]] = field(default_factory=list)

    def command(self, name: str, help: str, *options: Option) -> Callable[[Handler], Handler]:
        def declare(func: Handler) -> Handler:
            self.commands.append((name, help, options, func))
            return func

        return declare

    def register(self, sub: Any) -> None:
        if self.name is not None:
            parent = sub.add_parser(self.name, help=self.help, description=self.help)
            sub = parent.add_subparsers(dest=f"{self.name}_command", required=True, metavar="COMMAND")
        for name, help, options, func in self.commands:
            parser = sub.add_parser(name, help=help, description=help)
            parser.set_defaults(func=func, command_name=name)
            for opt in options:
                opt.add(parser)


# --------------------------------------------------------------------------- options written once

CONFIG = option("config", help="the pipeline spec, e.g. config/digits.yaml")
PARAMS = option("params", nargs="*", metavar="Name=Value", help="parameter overrides")
JSON = option("--json", action="store_true", help="JSON instead of a table")
ROOT = option("--root", help="local run root: the object store, cache, executions, registry and endpoints "
              "(default: $SMP_LOCAL_ROOT or runs)")  # fmt: skip
MOUNT = option("--mount", action="append", default=None, metavar="BUCKET=DIR",
               help=f"serve an S3 bucket from a local directory (always: {DATA_MOUNT}); repeatable")  # fmt: skip
TAIL = option("--tail", type=int, default=30, help="log lines shown for a failed step")
NPROC = option("--nproc", type=int, help="processes for torch_distributed (default: the instance's GPUs, at most the "
               "cores)")  # fmt: skip
PARALLEL = option("--parallel", type=int, default=max(1, os.cpu_count() or 1), help="steps run at once")
NO_CACHE = option("--no-cache", action="store_true", help="ignore the step cache")
EXECUTION_ARN = option("execution", metavar="EXECUTION_ARN")
LOCAL_EXECUTION = option("execution", metavar="ID|latest")
NO_WAIT = option("--no-wait", action="store_true", help="return once the execution has started")
LOCAL = option("--local", action="store_true", help="the local registry or endpoint, under the run root")


# --------------------------------------------------------------------------- shared helpers


def run_root(args: argparse.Namespace) -> Path:
    return layout.local_root(getattr(args, "root", None))


def mounts(args: argparse.Namespace) -> dict[str, Path]:
    """Buckets served from directories: the example data's, and each ``--mount BUCKET=DIR``."""
    out = {}
    for pair in [DATA_MOUNT, *(getattr(args, "mount", None) or [])]:
        bucket, sep, directory = pair.partition("=")
        if not sep or not bucket or not directory:
            raise UsageError(f"--mount {pair!r} is not BUCKET=DIRECTORY")
        out[bucket] = Path(directory)
    return out


def store(args: argparse.Namespace) -> Any:
    from pipelines.local.store import ObjectStore

    return ObjectStore(run_root(args) / "s3", mounts(args))


def root_flags(args: argparse.Namespace, local: bool = True) -> str:
    """The flags that name this run root again in a command printed for the user."""
    root = getattr(args, "root", None)
    return (" --local" if local else "") + ("" if root is None else f" --root {root}")


def load(config: str) -> Any:
    from pipelines.loader import load_spec

    return load_spec(config)


def compile_spec(config: str, meanwhile: Callable[[str, Any, Any], None] | None = None) -> Any:
    """The spec compiled, and every request of its definition checked against the SageMaker API's model
    (served from the compile cache while nothing it is made of changed: no SDK import, no compile).

    ``meanwhile(name, settings, code)``: what the caller needs done before it uses the compile, given the
    pipeline's name, the settings and the step scripts' bundle (`CodeBundle`, its archive made), or ``None`` for
    the bundle where the compile cache holds the spec. It is done while a child process beside this one
    (`pipelines.cli.aside`) compiles the spec and checks its definition; the child starts before the compile
    cache is asked (its key hashes the package's files and reads two versions: 15 ms), and a hit stops it. The
    child packs the same scripts for their digest (the definition's URIs) but makes no archive: this process
    makes it, beside it. The checks go with the compile: the SDK reads the API's model too (a 2.6 MB file), so
    the child has it parsed, and this process need not parse it again. A child that fails hands back nothing:
    this process then does it all again (`_checked`), and raises what it raises."""
    from pipelines.settings import Settings

    spec = load(config)
    settings = Settings()
    aside = None
    if meanwhile is not None:
        from pipelines.cli.aside import Aside

        aside = Aside.start(functools.partial(_compiled_parts, config, spec, settings))
    try:
        from pipelines import compile_cache
        from pipelines.compiler.code import pack_steps

        entry = compile_cache.entry_key(config, settings)  # hashes the package's files: once, for load and save
        cached = compile_cache.load(BUILD / ".compile-cache", entry, spec, settings)
        if cached is not None and aside is not None:
            aside.cancel()
            aside = None
        code = pack_steps().archived() if cached is None and aside is not None else None
        if meanwhile is not None:
            meanwhile(settings.pipeline_name(spec.name), settings, code)
    except BaseException:
        if aside is not None:
            aside.cancel()
        raise
    if cached is not None:
        return cached
    from pipelines.compiler import CompiledPipeline

    parts = aside.result() if aside is not None else None
    if parts is not None:
        name, definition, packed = parts
        if code is None or code.digest != packed.digest:  # a script changed between the two reads: the child's
            code = packed
        compiled = CompiledPipeline(name, definition, code, None, settings, spec)
    else:
        compiled = _checked(config, spec, settings)
    compile_cache.save(BUILD / ".compile-cache", entry, compiled)
    return compiled


def _checked(config: str, spec: Any, settings: Any) -> Any:
    """The compile with every check of it against the API's model: the instance types first (a type the API
    does not know would fail inside the SDK, less clearly), then the definition's requests and the pipeline's."""
    from pipelines.compiler import compile_pipeline
    from pipelines.requests import check_instance_types, check_pipeline, check_requests

    check_instance_types(config, spec)
    compiled = compile_pipeline(spec, settings)
    check_requests(config, compiled.spec, json.loads(compiled.definition))
    check_pipeline(config, compiled.spec, compiled.name, compiled.definition)
    return compiled


def _compiled_parts(config: str, spec: Any, settings: Any) -> tuple[str, str, Any]:
    """In the compile's child process: what the CLI uses of a checked compile (a `CompiledPipeline` less the
    SDK's ``Pipeline``, which nothing after a compile uses and which does not pickle)."""
    compiled = _checked(config, spec, settings)
    return compiled.name, compiled.definition, compiled.code


def overrides(compiled: Any, definition: dict[str, Any], pairs: list[str]) -> dict[str, Any]:
    """``Name=Value`` overrides, typed against the definition the pipeline was compiled to (as for a local and
    a SageMaker run alike), then given the checks defaults get: the parameter's min, max and choices, and the
    SageMaker API's model for every request they reach. Exit 2 before anything runs."""
    from pipelines.parameters import ParameterError, parse_overrides
    from pipelines.requests import check_overrides

    parsed = parse_overrides(definition, pairs)
    problems = compiled.spec.refuse_overrides(parsed)
    if problems:
        raise ParameterError("; ".join(problems))
    check_overrides(definition, parsed)
    return parsed


def write_run_report(view: Any, path: Path, figures: Path | None = None) -> None:
    """The report at the end of a run: the execution's outcome stands whatever happens to its report."""
    try:
        from pipelines.report.html import write_report

        write_report(view, path, figures)
    except Exception as exc:
        print(f"warning: the report could not be written: {type(exc).__name__}: {exc}", file=sys.stderr)


def remote_client() -> Any:
    """A SageMaker client for a region that is configured (exit 2 before anything is sent otherwise)."""
    from pipelines.remote import Remote
    from pipelines.settings import Settings

    settings = Settings()
    settings.require_region()
    return Remote(settings)


def view_dir(arn: str) -> Path:
    """build/<pipeline>/<execution id>: where a SageMaker execution's results are downloaded."""
    pipeline = arn.split(":pipeline/", 1)[-1].split("/", 1)[0]
    return BUILD / pipeline / arn.rsplit("/", 1)[-1]
