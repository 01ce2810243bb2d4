"""A ``local run``'s compile beside the rest of its start-up (`pipelines.cli.aside`): the same definition and
code as a compile in the process, a failed child's work done again in the process, a stopped child gone.

Each check runs in a fresh process: a fork is taken only in a process with one thread, which a test session
(servers, writers of other tests) need not be."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

COMPILE = """
import hashlib, json, sys
from pipelines.cli.common import compile_spec
given = {}
def meanwhile(name, settings, code):
    print("meanwhile ran", flush=True)
    given.update(name=name, bucket=settings.bucket, digest=code and code.digest,
                 archived=code is not None and "tarball" in vars(code))
compiled = compile_spec(sys.argv[1], meanwhile=meanwhile)
print(json.dumps({"aside": compiled.pipeline is None, "definition": compiled.definition,
                  "uploads": {u: hashlib.sha256(d).hexdigest() for u, d in compiled.uploads().items()},
                  "given": given, "compiled": [compiled.name, compiled.settings.bucket, compiled.code.digest]}))
"""

UNIT = """
import json, os, time
from pipelines.cli.aside import Aside, can_fork

def fails():
    raise ValueError("in the child")

out = {"can_fork": can_fork()}
out["value"] = Aside.start(lambda: {"n": 41 + 1}).result()
out["failed"] = Aside.start(fails).result()
out["printed"] = Aside.start(lambda: print("from the child") or 7).result()
slow = Aside.start(lambda: time.sleep(60))
started = time.monotonic()
slow.cancel()
out["cancel_s"] = time.monotonic() - started
status = None
while status is None and time.monotonic() < started + 5:
    pid, code = os.waitpid(slow.pid, os.WNOHANG)
    status = code if pid else None
    time.sleep(0.01)
out["killed"] = status is not None and os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9
print(json.dumps(out))
"""

HIT = """
import json, sys
from pipelines.cli.common import compile_spec
first = compile_spec(sys.argv[1], meanwhile=lambda *_: None)
second = compile_spec(sys.argv[1], meanwhile=lambda _, __, code: print("meanwhile ran", code, flush=True))
print(json.dumps({"second": type(second).__name__, "same": first.definition == second.definition}))
"""

needs_two_cpus = pytest.mark.skipif(
    sys.platform != "linux" or len(os.sched_getaffinity(0)) < 2, reason="the compile goes aside on Linux with 2+ CPUs"
)


def _python(code: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "SMP_NO_COMPILE_ASIDE"} | env
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=environment, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


@needs_two_cpus
@pytest.mark.parametrize("config", ["config/bengali.yaml", "config/tabular.yaml"])
def test_a_compile_beside_gives_the_definition_and_code_a_compile_here_gives(config: str) -> None:
    runs = {}
    for mode, env in (("aside", {}), ("here", {"SMP_NO_COMPILE_ASIDE": "1"})):
        done = _python(COMPILE, config, SMP_NO_COMPILE_CACHE="1", **env)
        assert done.returncode == 0, done.stderr[-3000:]
        lines = done.stdout.strip().splitlines()
        assert lines[0] == "meanwhile ran"  # the caller's own start-up ran (beside the child, or before compiling)
        runs[mode] = json.loads(lines[-1])
    assert runs["aside"].pop("aside") is True and runs["here"].pop("aside") is False
    # beside the child, the caller is given the compile's name and bundle, its archive made (`local run` puts the
    # scripts in place meanwhile); compiling here, no bundle: it is known only once compiled
    given = runs["aside"].pop("given")
    assert [given["name"], given["bucket"], given["digest"]] == runs["aside"]["compiled"] and given["archived"]
    assert runs["here"].pop("given")["digest"] is None
    assert runs["aside"] == runs["here"]


@needs_two_cpus
def test_a_child_hands_back_its_result_or_nothing_and_a_cancelled_one_is_gone() -> None:
    done = _python(UNIT)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["can_fork"] is True
    assert out["value"] == {"n": 42}
    assert out["failed"] is None  # the caller does the work itself, and raises what it raises
    assert "from the child" in done.stdout  # what a child that succeeded printed is printed by the parent
    assert out["printed"] == 7
    assert out["cancel_s"] < 1 and out["killed"] is True  # stopped at once (reaped at exit, or here)


@pytest.mark.parametrize(("old", "new", "said"), [
    ("ml.m5.xlarge", "ml.m5.huge", "ml.m5.huge"),  # the instance check, before the SDK compiles
    ("    endpoint_name: digits-quickstart\n", f"    endpoint_name: e{'x' * 53}\n", "over the limit of 63"),
], ids=["instance-type", "request"])  # fmt: skip
def test_a_spec_error_in_a_local_run_is_said_once_with_exit_2(tmp_path: Path, old: str, new: str, said: str) -> None:
    """The checks fail in the child that compiles: it hands back nothing, and the command says the error once
    (it does the work again itself, and raises what it raises)."""
    spec = tmp_path / "bad.yaml"
    text = (ROOT / "config" / "digits.yaml").read_text()
    assert old in text
    spec.write_text(text.replace(old, new, 1))
    done = subprocess.run([sys.executable, "-m", "pipelines", "local", "run", str(spec), "--root",
                           str(tmp_path / "runs"), "--tracking", "off"], cwd=ROOT, capture_output=True, text=True,
                          env=os.environ | {"SMP_NO_COMPILE_CACHE": "1"}, timeout=300)  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.count(said) == 1, done.stderr
    assert "Traceback" not in done.stderr


@needs_two_cpus
def test_a_compile_cache_hit_stops_the_child_started_before_it_was_asked() -> None:
    """The child starts before the cache is asked (its key costs 15 ms); on a hit the cached definition is
    served, the caller's start-up still runs, and the child is stopped."""
    done = _python(HIT, "config/digits.yaml")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert "meanwhile ran None" in lines  # no bundle: the cached entry holds the uploads
    assert json.loads(lines[-1]) == {"second": "CachedPipeline", "same": True}


@needs_two_cpus
def test_ctrl_c_while_the_spec_compiles_ends_the_command_and_its_child_without_a_traceback(tmp_path: Path) -> None:
    import signal
    import time

    env = {k: v for k, v in os.environ.items() if k != "SMP_NO_COMPILE_ASIDE"} | {"SMP_NO_COMPILE_CACHE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "pipelines", "local", "run", "config/bengali.yaml", "--root",
                             str(tmp_path / "runs"), "--tracking", "off"], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    deadline = time.time() + 60
    while time.time() < deadline and not _children(proc.pid):  # the compile's child: Ctrl-C lands mid-compile
        time.sleep(0.01)
    assert _children(proc.pid), "no compile child was started"
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    # 130 as the command returns it; about one run in 75 ends by the signal itself (-2) just after saying so
    assert proc.returncode in (130, -signal.SIGINT), err
    assert "interrupted (Ctrl-C)" in err and "Traceback" not in err
    time.sleep(0.2)
    assert subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True).returncode == 1  # none left


def _children(pid: int) -> list[str]:
    return subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
