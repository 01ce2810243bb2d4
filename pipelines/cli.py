"""``python -m pipelines <command>``: every Makefile target's command.

Exit status: 0 success, 1 a failed run or an AWS error, 2 bad input (spec, parameters, settings).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = Path("build")


class UsageError(Exception):
    """Bad input the user can fix: printed as one message, exit status 2."""


def _load(config: str):  # type: ignore[no-untyped-def]
    from pipelines.loader import load_spec

    return load_spec(config)


def _compile(config: str):  # type: ignore[no-untyped-def]
    from pipelines.compiler import compile_pipeline
    from pipelines.settings import Settings

    return compile_pipeline(_load(config), Settings())


def cmd_validate(args: argparse.Namespace) -> int:
    spec = _load(args.config)
    kinds = ", ".join(f"{s.name} ({s.kind})" for s in spec.steps)
    print(f"{args.config}: ok: pipeline '{spec.name}', {len(spec.steps)} steps: {kinds}")
    return 0


def cmd_definition(args: argparse.Namespace) -> int:
    compiled = _compile(args.config)
    out = Path(args.out) if args.out else BUILD / f"{compiled.name}.json"
    compiled.write(out)
    print(f"wrote {out} ({len(compiled.definition):,} bytes, code {compiled.code.digest})")
    return 0


def cmd_upsert(args: argparse.Namespace) -> int:
    from pipelines.remote import Remote, require_settings
    from pipelines.settings import Settings

    require_settings(Settings())
    compiled = _compile(args.config)
    compiled.write(BUILD / f"{compiled.name}.json")
    arn = Remote(compiled.settings).upsert(compiled.name, compiled.definition, _load(args.config), compiled.uploads())
    print(arn)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from pipelines.remote import Remote, parse_overrides, require_settings
    from pipelines.settings import Settings

    spec = _load(args.config)
    overrides = parse_overrides(spec, args.params)
    settings = Settings()
    require_settings(settings)
    remote = Remote(settings)
    name = f"{settings.name_prefix}{spec.name}"
    arn = remote.start(name, overrides)
    if args.no_wait:
        return 0
    status = remote.wait(arn)
    if status != "Succeeded":
        for line in remote.failure_report(arn):
            print(line, file=sys.stderr)
        return 1
    remote.download_results(arn, BUILD / name / arn.rsplit("/", 1)[-1])
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from pipelines.datasets import write_all

    written = write_all(Path(args.out), bengali_images=args.bengali_images)
    for name, paths in written.items():
        for path in paths:
            print(f"{name}: {path}")
    return 0


def cmd_golden(args: argparse.Namespace) -> int:
    from pipelines.golden import regenerate

    for path in regenerate():
        print(f"wrote {path}")
    return 0


def _docker(cmd: list[str]) -> int:
    print("+ " + " ".join(cmd), flush=True)
    try:
        return subprocess.call(cmd)
    except FileNotFoundError:
        raise UsageError("docker is not installed; image-build and image-push need a Docker engine") from None


def _images() -> list[tuple[str, str, str]]:
    """(kind, base image, target URI) for the training and inference images."""
    from pipelines.compiler.context import custom_image_uri, sdk_environment
    from pipelines.settings import Settings

    sdk_environment()
    from sagemaker import image_uris

    settings = Settings()
    out = []
    for kind, scope in (("training", "training"), ("inference", "inference")):
        base = image_uris.retrieve(
            "pytorch",
            region=settings.region,
            version="2.6.0",
            py_version="py312",
            instance_type="ml.g5.xlarge",
            image_scope=scope,
        )
        out.append((kind, base, custom_image_uri(settings, kind)))
    return out


def cmd_image_build(args: argparse.Namespace) -> int:
    for kind, base, target in _images():
        rc = _docker(
            [
                "docker",
                "build",
                "--build-arg",
                f"BASE_IMAGE={base}",
                "-t",
                target,
                "-f",
                str(ROOT / "containers" / kind / "Dockerfile"),
                str(ROOT / "containers" / kind),
            ]
        )
        if rc:
            return rc
    return 0


def cmd_image_push(args: argparse.Namespace) -> int:
    for _, _, target in _images():
        rc = _docker(["docker", "push", target])
        if rc:
            return rc
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipelines", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func, help: str) -> argparse.ArgumentParser:  # type: ignore[no-untyped-def]
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    p = command("validate", cmd_validate, "check a spec without compiling it (make validate)")
    p.add_argument("config")
    p = command("definition", cmd_definition, "compile a spec to its definition JSON (make pipeline-definition)")
    p.add_argument("config")
    p.add_argument("--out", help="output file (default build/<pipeline>.json)")
    p = command("upsert", cmd_upsert, "upload the code, create or update the pipeline (make pipeline-upsert)")
    p.add_argument("config")
    p = command("run", cmd_run, "start an execution and follow it (make pipeline-run)")
    p.add_argument("config")
    p.add_argument("params", nargs="*", metavar="Name=Value", help="parameter overrides")
    p.add_argument("--no-wait", action="store_true", help="return once the execution has started")
    p = command("data", cmd_data, "write the example datasets (make data)")
    p.add_argument("--out", default="data", help="output directory (default: data)")
    p.add_argument("--bengali-images", type=int, default=4000, help="synthetic Bengali images (default 4000)")
    command("golden", cmd_golden, "regenerate the golden definitions under tests/golden (make golden)")
    command("image-build", cmd_image_build, "build the training and inference images (make image-build)")
    command("image-push", cmd_image_push, "push them to ECR (make image-push)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from pipelines.loader import SpecError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SpecError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        print(f"{len(exc.issues)} problem(s) in the spec", file=sys.stderr)
        return 2
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from pipelines.compiler.context import CompileError
        from pipelines.remote import RemoteError

        if isinstance(exc, CompileError | RemoteError):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(exc, ClientError | BotoCoreError):
            print(f"error: AWS: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
