"""``python -m pipelines``: the command's process.

A command imports much (about 1,100 modules: pydantic, botocore, the SageMaker SDK when it compiles) and then
mostly waits on its jobs. CPython's default collector runs a young collection every 700 new objects and so
traverses those modules' objects again and again while they load: about 0.1 s of a 0.8 s first run. It runs
here every 20,000 (gen 0), and a full collection far more rarely. And the interpreter's last collections at
exit traverse every live object once more (0.2 s): they are frozen first (``gc.freeze``), after the command's
files are written and closed. Benchmarked in ``bench/peers.py``.

Pydantic looks for plugins of its own (the ``pydantic`` entry points of every installed distribution) when it
builds the spec's first model: 10 ms of scanning package metadata for plugins the command has no use for.
``PYDANTIC_DISABLE_PLUGINS`` turns that off unless the caller set it.
"""

import gc
import os
import sys

gc.set_threshold(20_000, 20, 100)
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from pipelines.cli import main  # noqa: E402 - after the collector's thresholds, which its imports run under

try:
    status = main()
finally:
    gc.freeze()
sys.exit(status)
