"""Model commands: the model registry, deployments and endpoints, local or on SageMaker (``registry list``,
``registry describe``, ``registry approve``, ``registry reject``, ``deploy``, ``endpoints list|logs|stop``,
``invoke``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pipelines.cli.common import JSON, LOCAL, MOUNT, ROOT, Group, UsageError, option, run_root, store

registry = Group("registry", "model packages: list, describe, approve, reject (SageMaker, or --local)")
endpoints = Group("endpoints", "local endpoints: list, logs, stop")
group = Group()  # deploy and invoke, at the top level


def _registry(args: argparse.Namespace) -> Any:
    """The local registry (``--local``) or SageMaker's: the same calls, the same shapes."""
    if args.local:
        from pipelines.local.registry import LocalRegistry

        return LocalRegistry(run_root(args))
    import boto3

    from pipelines.remote.registry import SageMakerRegistry
    from pipelines.settings import Settings

    return SageMakerRegistry(boto3.Session(region_name=Settings().require_region()))


@registry.command("list", "packages, newest first", option("group", nargs="?"), LOCAL, ROOT, JSON)
def registry_list(args: argparse.Namespace) -> int:
    from pipelines.cli.printing import print_packages

    print_packages(_registry(args).list(args.group), args.json)
    return 0


@registry.command("describe", "one package: metrics, artifact, image, approval",
                  option("package", metavar="GROUP[:VERSION]"), LOCAL, ROOT, JSON)  # fmt: skip
def registry_describe(args: argparse.Namespace) -> int:
    from pipelines.cli.printing import print_package
    from pipelines.local.registry import parse_ref

    print_package(_registry(args).describe(*parse_ref(args.package)), args.json)
    return 0


def _set_status(args: argparse.Namespace, status: str) -> int:
    from pipelines.local.registry import parse_ref

    group_name, version = parse_ref(args.package)
    if version is None:
        raise UsageError(f"say which version to {args.command_name}: {group_name}:VERSION")
    package = _registry(args).set_status(group_name, version, status, args.reason)
    print(f"{group_name} version {version}: {package['ModelApprovalStatus']}")
    return 0


PACKAGE_VERSION = option("package", metavar="GROUP:VERSION")
REASON = option("--reason", help="kept as the approval description")


@registry.command("approve", "approve a version", PACKAGE_VERSION, REASON, LOCAL, ROOT, JSON)
def registry_approve(args: argparse.Namespace) -> int:
    return _set_status(args, "Approved")


@registry.command("reject", "reject a version", PACKAGE_VERSION, REASON, LOCAL, ROOT, JSON)
def registry_reject(args: argparse.Namespace) -> int:
    return _set_status(args, "Rejected")


def _percent(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 0 <= int(text) <= 100:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole percentage from 0 to 100")
    return int(text)


def _capture(args: argparse.Namespace, bucket: str) -> dict[str, Any] | None:
    """The endpoint configuration's DataCaptureConfig the flags ask for (SageMaker Pipelines refuses one in a
    pipeline, so it is switched on here, outside it), or None."""
    if args.data_capture is None:
        if args.capture_destination:
            raise UsageError("--capture-destination needs --data-capture PERCENT")
        return None
    from pipelines.spec.deploy import data_capture_config

    destination = args.capture_destination or f"s3://{bucket}/data-capture/"
    if not destination.startswith("s3://") or "?" in destination or "#" in destination:
        raise UsageError(f"--capture-destination {destination!r} is not an s3://bucket/prefix/ URI")
    return data_capture_config(args.data_capture, destination)


@group.command("deploy", "deploy an approved model package to an endpoint (SageMaker, or --local)",
               option("package", metavar="GROUP[:VERSION]"),
               option("--endpoint", required=True, help="endpoint name; an existing one is updated in place"),
               option("--local", action="store_true", help="a local endpoint on 127.0.0.1"), ROOT, MOUNT,
               option("--instance-type", default="ml.m5.large", help="SageMaker instance type (default ml.m5.large)"),
               option("--instance-count", type=int, default=1),
               option("--data-capture", type=_percent, metavar="PERCENT",
                      help="capture this share of requests and responses (SageMaker's data capture)"),
               option("--capture-destination", metavar="S3_URI",
                      help="where captures go (default s3://<bucket>/data-capture/; SageMaker adds "
                           "<endpoint>/<variant>/<hour>/)"))  # fmt: skip
def deploy(args: argparse.Namespace) -> int:
    from pipelines.local.registry import parse_ref

    group_name, version = parse_ref(args.package)
    packages = _registry(args)
    package = packages.describe(group_name, version)
    if package["ModelApprovalStatus"] != "Approved":
        raise UsageError(
            f"{group_name} version {package['ModelPackageVersion']} is {package['ModelApprovalStatus']}, not "
            f"Approved: approve it first (python -m pipelines registry approve {group_name}:"
            f"{package['ModelPackageVersion']}" + (" --local" if args.local else "") + ")"
        )
    if args.local:
        from pipelines.local.serving import Serving
        from pipelines.local.serving import deploy as serve

        container = package["InferenceSpecification"]["Containers"][0]
        archive = store(args).path(container["ModelDataUrl"])
        config = f"{group_name}-v{package['ModelPackageVersion']}"[:63]
        environment = {k: str(v) for k, v in container.get("Environment", {}).items()}
        from pipelines.settings import Settings

        capture = _capture(args, Settings().bucket)  # under the local object store, as a local run's outputs
        serving = Serving(environment, capture, str(store(args).root),
                          {b: str(p) for b, p in store(args).mounts.items()})  # fmt: skip
        state = serve(run_root(args), args.endpoint, archive, config, serving)
        print(f"endpoint {args.endpoint} serves {group_name} version {package['ModelPackageVersion']} "
              f"at http://127.0.0.1:{state['port']}")  # fmt: skip
        return 0
    from pipelines.remote import require_settings
    from pipelines.settings import Settings

    settings = Settings()
    require_settings(settings)
    from pipelines.remote.registry import Deployment

    deployment = Deployment(args.endpoint, settings.role, args.instance_type, args.instance_count,
                            _capture(args, settings.bucket))  # fmt: skip
    how = packages.deploy(package, deployment)
    print(f"endpoint {args.endpoint} {how}: serving {group_name} version {package['ModelPackageVersion']}")
    return 0


@endpoints.command("list", "local endpoints and whether they serve", ROOT, JSON)
def endpoints_list(args: argparse.Namespace) -> int:
    from pipelines.cli.printing import print_endpoints
    from pipelines.local.serving import list_endpoints

    found = list_endpoints(run_root(args))
    if args.json:
        print(json.dumps(found, indent=2))
    else:
        print_endpoints(found)
    return 0


@endpoints.command("logs", "an endpoint's log", option("name"), ROOT, option("--tail", type=int, default=0))
def endpoints_logs(args: argparse.Namespace) -> int:
    from pipelines.local.serving import endpoints_dir, find

    find(run_root(args), args.name)
    lines = (endpoints_dir(run_root(args)) / args.name / "log.txt").read_text().splitlines()
    for line in lines[-args.tail :] if args.tail else lines:
        print(line)
    return 0


@endpoints.command("stop", "stop an endpoint (or all)", option("name", help="endpoint name, or all"), ROOT)
def endpoints_stop(args: argparse.Namespace) -> int:
    from pipelines.local.serving import stop, stop_all

    if args.name == "all":
        print(f"stopped: {', '.join(stop_all(run_root(args))) or 'none was running'}")
        return 0
    print(f"endpoint {args.name} " + ("stopped" if stop(run_root(args), args.name) else "was not running"))
    return 0


CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".npy": "application/x-npy",
                 ".json": "application/json", ".csv": "text/csv", ".jsonl": "application/jsonlines"}  # fmt: skip


def model_error(status: int, message: str) -> str:
    """A container's error answer as SageMaker's runtime reports it: InvokeEndpoint fails with ``ModelError``
    (HTTP 424), carrying the container's status (``OriginalStatusCode``) and its body (``OriginalMessage``)
    (botocore's sagemaker-runtime model), in the runtime's words."""
    kind = "client" if 400 <= status < 500 else "server"
    return (f'ModelError (424): Received {kind} error ({status}) from primary with message "{message.strip()}" '
            f"(OriginalStatusCode {status})")  # fmt: skip


def _invoke_local(args: argparse.Namespace, body: bytes, content_type: str) -> tuple[bytes | None, str]:
    """(the answer, or None with the error to print) of a local endpoint: the container's errors as the runtime's
    ModelError, the endpoint's own refusals (an oversized payload, a full queue) as they are."""
    import urllib.error
    import urllib.request

    from pipelines.local.server import REFUSAL
    from pipelines.local.serving import HOST, find

    state = find(run_root(args), args.endpoint)
    request = urllib.request.Request(
        f"http://{HOST}:{state['port']}/invocations", data=body, method="POST",
        headers={"Content-Type": content_type, "Accept": args.accept},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=90) as response:
            return response.read(), ""
    except urllib.error.HTTPError as exc:
        text = exc.read().decode(errors="replace")
        if exc.headers.get(REFUSAL):
            return None, f"{exc.code} {text}"
        return None, model_error(exc.code, text)
    except urllib.error.URLError as exc:
        raise UsageError(f"endpoint {args.endpoint} does not answer ({exc.reason}); "
                         "python -m pipelines endpoints list") from None  # fmt: skip


def _invoke_sagemaker(args: argparse.Namespace, body: bytes, content_type: str) -> tuple[bytes | None, str]:
    import boto3
    from botocore.exceptions import ClientError

    from pipelines.settings import Settings

    runtime = boto3.Session(region_name=Settings().require_region()).client("sagemaker-runtime")
    try:
        answer = runtime.invoke_endpoint(EndpointName=args.endpoint, ContentType=content_type, Accept=args.accept,
                                         Body=body)  # fmt: skip
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ModelError":
            raise
        status = int(exc.response.get("OriginalStatusCode") or 0)
        return None, model_error(status, str(exc.response.get("OriginalMessage") or exc.response["Error"].get(
            "Message", "")))  # fmt: skip
    return bytes(answer["Body"].read()), ""


@group.command("invoke", "send images (PNG/JPEG/.npy/.json) to an endpoint and print its predictions",
               option("endpoint"), option("files", nargs="*", metavar="FILE"),
               option("--body", help="send this text instead of a file, e.g. a CSV row: --body '17.99,10.38,...'"),
               option("--local", action="store_true", help="a local endpoint"), ROOT,
               option("--content-type", help="default: from the file's extension"),
               option("--accept", default="application/json"),
               option("--json", action="store_true", help="print the endpoint's answer as it is"))  # fmt: skip
def invoke(args: argparse.Namespace) -> int:
    from pipelines.cli.printing import print_predictions

    failures = 0
    if bool(args.files) == (args.body is not None):
        raise UsageError("say what to send: one or more files, or --body TEXT (not both)")
    for file in args.files or ["--body"]:
        path = Path(file)
        if args.body is not None:
            body, content_type = args.body.encode(), args.content_type or "text/csv"
        else:
            content_type = args.content_type or CONTENT_TYPES.get(path.suffix.lower())
            if content_type is None:
                raise UsageError(f"{file}: unknown file type; use .png, .jpg, .npy, .json, .csv or .jsonl, or say "
                                 "--content-type")  # fmt: skip
            try:
                body = path.read_bytes()
            except OSError as exc:
                raise UsageError(f"{file}: {exc.strerror}") from None
        answer, error = (_invoke_local if args.local else _invoke_sagemaker)(args, body, content_type)
        if answer is None:
            print(f"{file}: {error}", file=sys.stderr)
            failures += 1
            continue
        if args.json:
            print(answer.decode(errors="replace"))
        else:
            print_predictions(path.name, answer)
    return 1 if failures else 0
