#!/bin/bash
# The entry point of a processing job on the stock SageMaker PyTorch image: install what the step scripts
# need beyond the image (requirements-processing.txt, beside this file), then run the script with its
# arguments, as the SDK's FrameworkProcessor does for a source directory.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python3 -m pip install --quiet --disable-pip-version-check --no-cache-dir -r "$here/requirements-processing.txt"
exec python3 "$@"
