"""Image commands: build the project's training and inference images and push them to ECR (``image-build``,
``image-push``; the Dockerfiles are in ``containers/<role>/``)."""

from __future__ import annotations

import argparse
import subprocess

from pipelines import layout
from pipelines.cli.common import Group, UsageError

group = Group()


def _docker(cmd: list[str]) -> int:
    print("+ " + " ".join(cmd), flush=True)
    try:
        return subprocess.call(cmd)
    except FileNotFoundError:
        raise UsageError("docker is not installed; image-build and image-push need a Docker engine") from None


def _images() -> list[tuple[str, str, str]]:
    """(role, base image, target URI) for the training and inference images."""
    from pipelines.compiler.context import base_image_uri, custom_image_uri
    from pipelines.settings import Settings

    settings = Settings()
    return [(role, base_image_uri(settings, role), custom_image_uri(settings, role)) for role in layout.IMAGE_ROLES]


@group.command("image-build", "build the training and inference images (make image-build)")
def image_build(args: argparse.Namespace) -> int:
    for role, base, target in _images():
        context = layout.image_context(role)
        rc = _docker(["docker", "build", "--build-arg", f"BASE_IMAGE={base}", "-t", target,
                      "-f", str(context / "Dockerfile"), str(context)])  # fmt: skip
        if rc:
            return rc
    return 0


@group.command("image-push", "push them to ECR (make image-push)")
def image_push(args: argparse.Namespace) -> int:
    for _, _, target in _images():
        rc = _docker(["docker", "push", target])
        if rc:
            return rc
    return 0
