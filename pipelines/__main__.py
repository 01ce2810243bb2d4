"""``python -m pipelines``: the command's process.

A command imports much (about 1,100 modules: pydantic, botocore, the SageMaker SDK when it compiles) and then
mostly waits on its jobs. CPython's default collector runs a young collection every 700 new objects and so
traverses those modules' objects again and again while they load: about 0.1 s of a 0.8 s first run. It runs
here every 20,000 (gen 0), and a full collection far more rarely. And the interpreter's last collections at
exit traverse every live object once more (0.2 s): they are frozen first (``gc.freeze``), after the command's
files are written and closed. Benchmarked in ``bench/peers.py``.
"""

import gc
import sys

gc.set_threshold(20_000, 20, 100)

from pipelines.cli import main  # noqa: E402 - after the collector's thresholds, which its imports run under

try:
    status = main()
finally:
    gc.freeze()
sys.exit(status)
