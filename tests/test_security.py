"""The hostile corpus: credentials kept from everything the engine starts, a local endpoint that bad traffic
cannot starve, and specs, URIs and archives that cannot leave their bounds or exhaust the machine. Each test
is named in the README's Reliability section."""

from __future__ import annotations

import io
import json
import os
import socket
import struct
import subprocess
import sys
import tarfile
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pipelines.cli import main
from pipelines.local.store import ObjectStore, StoreError
from tests.tools.endpoints import artifact, chunked_until_answered, post, refused_before_read
from tests.tools.engine import engine_with, processing_step

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- credentials


def test_jobs_get_only_the_allow_listed_environment_and_a_home_of_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    (home / ".aws" / "credentials").write_text("[default]\naws_access_key_id = AKIAHOMEKEY\n")
    for name, value in (("HOME", str(home)), ("GITHUB_TOKEN", "ghp_x"), ("AWS_ACCESS_KEY_ID", "AKIA"),
                        ("AWS_PROFILE", "prod"), ("SMP_ROLE_ARN", "arn:r"), ("DATABASE_URL", "postgres://u:p@h"),
                        ("AWS_REGION", "eu-west-1"), ("LANG", "C.UTF-8")):  # fmt: skip
        monkeypatch.setenv(name, value)
    dump = ("import json, os, pathlib; print('ENV ' + json.dumps({'keys': sorted(os.environ), 'home': "
            "os.environ['HOME'], 'aws': (pathlib.Path.home() / '.aws' / 'credentials').exists()}))")  # fmt: skip
    execution = engine_with(tmp_path / "run", {"env.py": dump}, [processing_step("env", "env.py")])
    assert execution.run() == "Succeeded", execution.failure
    line = next(x for x in (execution.step_dir("env") / "log.txt").read_text().splitlines() if x.startswith("ENV "))
    seen = json.loads(line[4:])
    assert not {"GITHUB_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_PROFILE", "SMP_ROLE_ARN", "DATABASE_URL"} & set(seen["keys"])
    assert {"AWS_REGION", "LANG", "PATH", "HOME"} <= set(seen["keys"])
    assert seen["home"].startswith(str(execution.step_dir("env"))) and not seen["aws"]


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc")
def test_the_endpoint_server_and_its_model_worker_see_none_of_the_callers_credentials(
    tmp_path: Path, digits_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.local.serving import deploy, stop

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "GITHUB_TOKEN"):
        monkeypatch.setenv(name, "leaked")
    root = tmp_path / "runs"
    state = deploy(root, "env", digits_model / "model.tar.gz", "env-v1", log=lambda _: None)
    try:
        for pid in [state["pid"], *_children(state["pid"])]:
            env = _environ(pid)
            assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "GITHUB_TOKEN"} & set(env)
            assert env["HOME"].startswith(str((root / "endpoints" / "env").resolve()))
    finally:
        stop(root, "env")


SECRETS = [
    ("DB_PASS", "hunter2"), ("GITHUB_PAT", "x"), ("OPENAI_APIKEY", "x"), ("CREDENTIALS", "x"),
    ("PRIVATE_KEY_PEM", "x"), ("MY_SECRET_1", "x"), ("API_KEY", "x"), ("AWS_SECRET_ACCESS_KEY", "x"),
    ("SLACK_WEBHOOK_TOKEN", "x"), ("DATABASE_URL", "postgres://app:s3cret@db:5432/prod"),
    ("WHATEVER", "AKIAIOSFODNN7EXAMPLE"), ("WHATEVER", "ghp_" + "a" * 36), ("WHATEVER", "sk-" + "a" * 40),
    ("WHATEVER", "-----BEGIN RSA PRIVATE KEY-----\\nMIIE"), ("WHATEVER", "xoxb-1234567890-abcdef"),
    ("WHATEVER", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlc2ln"),
]  # fmt: skip
NOT_SECRETS = [("LOG_LEVEL", "debug"), ("EPOCHS", "3"), ("KEY_COLUMN", "image_id"), ("AUTHOR", "me"),
               ("TOKENIZER", "bert"), ("DATABASE_URL", "postgres://db:5432/prod"), ("PASSENGERS", "3"),
               ("DB_PASSWORD_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:db")]  # fmt: skip


@pytest.mark.parametrize(("name", "value"), SECRETS, ids=[f"{n}={v[:12]}" for n, v in SECRETS])
def test_a_secret_by_name_or_shape_is_refused_at_validate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, value: str
) -> None:
    spec = tmp_path / "spec.yaml"
    text = (ROOT / "config" / "digits.yaml").read_text()
    spec.write_text(text.replace("    script: preprocess.py\n", f"    script: preprocess.py\n    environment:\n"
                                 f"      {name}: \"{value}\"\n", 1))  # fmt: skip
    assert main(["validate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert f"'{name}' looks like a secret" in err and "Secrets Manager" in err and "Traceback" not in err


@pytest.mark.parametrize(("name", "value"), NOT_SECRETS, ids=[n for n, _ in NOT_SECRETS])
def test_ordinary_variables_are_not_taken_for_secrets(name: str, value: str) -> None:
    from pipelines.spec.checks import secret_kind

    assert secret_kind(name, value) is None


def test_a_local_run_reads_no_aws_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile-anywhere")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("SMP_NO_COMPILE_CACHE", "1")
    assert main(["validate", "config/digits.yaml"]) == 0, capsys.readouterr().err
    assert main(["definition", "config/digits.yaml", "--out", str(tmp_path / "d.json")]) == 0
    assert os.environ["AWS_PROFILE"] == "no-such-profile-anywhere"  # given back as it was


# --------------------------------------------------------------------------- the endpoint under bad traffic


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` grey pixels, with a tiny compressed body: what a
    decompression bomb looks like before it is decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = chunk(b"IDAT", zlib.compress(b"\0" * 1024))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + body + chunk(b"IEND", b"")


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _half_sent_headers(port: int, n: int) -> list[socket.socket]:
    out = []
    for _ in range(n):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        out.append(sock)
    return out


def _closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(0.5)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


@pytest.fixture
def endpoint(tmp_path: Path, digits_model: Path) -> Iterator[dict]:
    from pipelines.local.serving import deploy, stop

    root = tmp_path / "runs"
    state = deploy(root, "hostile", digits_model / "model.tar.gz", "hostile-v1", log=lambda _: None)
    yield state | {"root": root}
    stop(root, "hostile")


@pytest.mark.slow
def test_bad_traffic_gets_4xx_at_once_while_32_good_clients_are_all_served(endpoint: dict) -> None:
    import psutil

    from pipelines.local.serving import ping

    port = endpoint["port"]
    good = _npy(np.zeros((16, 16), np.uint8))
    results: list[int] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            results.append(post(port, good, "application/x-npy", timeout=120)[0])

    clients = [threading.Thread(target=client) for _ in range(32)]
    for t in clients:
        t.start()
    try:
        slow = _half_sent_headers(port, 300)  # 300 connections that never finish their headers
        cases = {
            "2 GB announced": refused_before_read(port, 2 * 1024**3),
            "10 GB announced, 1 KB sent": refused_before_read(port, 10**10),
        }
        for name, (status, seconds) in cases.items():
            assert status == 413 and seconds < 10, (name, status, seconds)
        status, sent = chunked_until_answered(port, 64 * 1024 * 1024)
        assert status == 413 and sent < 16 * 1024 * 1024, (status, sent)  # answered, not read to the end
        for body, content_type, want in (
            (_png_header(13000, 13000), "image/png", 413),
            (_png_header(50000, 50000), "image/png", 413),  # a decompression bomb: a 4xx, never a 500
            (_npy(np.zeros((2, 2), np.uint8)).replace(b"(2, 2)", b"(200000, 100000)"), "application/x-npy", 400),
            (b"[" * 100_000 + b"]" * 100_000, "application/json", 400),
        ):
            t0 = time.monotonic()
            got, message, _ = post(port, body, content_type)
            assert got == want and time.monotonic() - t0 < 30, (content_type, got, message)
            assert ping(port) is not None
        time.sleep(12)  # the header timeout (10 s) has passed: every half-sent connection was closed
        assert sum(_closed_by_server(s) for s in slow) == len(slow)
        for s in slow:
            s.close()
        server = psutil.Process(endpoint["pid"])
        rss = sum(p.memory_info().rss for p in [server, *server.children(recursive=True)])
        assert rss < 3 * 1024**3, rss  # nothing was read whole: a 2 GB body was never held
    finally:
        stop.set()
        for t in clients:
            t.join(timeout=180)
    assert results and set(results) == {200}, {s: results.count(s) for s in set(results)}


SLOW = """
import time
def model_fn(model_dir):
    return "slow"
def transform_fn(model, body, content_type, accept):
    if body == "slow":
        time.sleep(60)
    return '{"ok": true}', "application/json"
"""


def test_an_invocation_over_its_deadline_is_answered_504_and_its_work_ended(tmp_path: Path) -> None:
    from pipelines.local.serving import Serving, deploy, ping, stop

    root = tmp_path / "runs"
    archive = artifact(tmp_path / "slow.tar.gz", {"code/inference.py": SLOW})
    serving = Serving(environment={"SAGEMAKER_MODEL_SERVER_TIMEOUT": "3"})
    state = deploy(root, "slow", archive, "slow-v1", serving, log=lambda _: None)
    try:
        answers: list[tuple[int, float]] = []

        def slow_request() -> None:
            t0 = time.monotonic()
            answers.append((post(state["port"], b"slow", "application/json")[0], time.monotonic() - t0))

        worker = threading.Thread(target=slow_request)
        worker.start()
        time.sleep(0.5)
        t0 = time.monotonic()
        assert ping(state["port"]) == "slow-v1" and time.monotonic() - t0 < 1  # /ping answers while it works
        worker.join(timeout=60)
        [(status, seconds)] = answers
        assert status == 504 and seconds < 15, answers
        assert post(state["port"], b"fast", "application/json")[0] == 200  # a fresh worker serves on
    finally:
        stop(root, "slow")


def _module_artifact(path: Path, value: str) -> Path:
    inference = "from helper import VALUE\ndef model_fn(d):\n    return VALUE\n"
    inference += "def transform_fn(m, body, ct, accept):\n    import helper\n    return helper.VALUE, 'text/plain'\n"
    return artifact(path, {"code/inference.py": inference, "code/helper.py": f"VALUE = {value!r}\n"})


def test_a_swap_serves_the_new_artifacts_own_modules(tmp_path: Path) -> None:
    from pipelines.local.serving import deploy, stop

    root = tmp_path / "runs"
    state = deploy(root, "swap", _module_artifact(tmp_path / "a.tar.gz", "from A"), "a", log=lambda _: None)
    try:
        assert post(state["port"], b"x", "application/json")[2] == b"from A"
        again = deploy(root, "swap", _module_artifact(tmp_path / "b.tar.gz", "from B"), "b", log=lambda _: None)
        assert again["pid"] == state["pid"]  # the same server swapped its model
        assert post(state["port"], b"x", "application/json")[2] == b"from B"
    finally:
        stop(root, "swap")


def test_a_failed_swap_keeps_the_old_model_serving_fails_fast_and_says_so(tmp_path: Path) -> None:
    from pipelines.local.serving import EndpointError, deploy, list_endpoints, ping, stop

    root = tmp_path / "runs"
    state = deploy(root, "keep", _module_artifact(tmp_path / "a.tar.gz", "good"), "good", log=lambda _: None)
    broken = artifact(tmp_path / "broken.tar.gz", {"code/inference.py": "def model_fn(d):\n    raise ValueError("
                                                   "'these weights do not load')\n"})  # fmt: skip
    try:
        t0 = time.monotonic()
        with pytest.raises(EndpointError, match="broken did not load: ValueError: these weights do not load"):
            deploy(root, "keep", broken, "broken", log=lambda _: None)
        assert time.monotonic() - t0 < 60
        assert ping(state["port"]) == "good" and post(state["port"], b"x", "application/json")[2] == b"good"
        [listed] = list_endpoints(root)
        assert listed["endpoint_config"] == "good" and "these weights do not load" in listed["last_error"]
    finally:
        stop(root, "keep")


def _servers_of(directory: Path) -> list[int]:
    import psutil

    wanted = ("pipelines.local.server", str(directory.resolve()))
    return [p.pid for p in psutil.process_iter(["cmdline"]) if all(w in (p.info["cmdline"] or []) for w in wanted)]


def test_redeploying_a_busy_endpoint_swaps_the_same_server_and_stop_all_stops_it(tmp_path: Path) -> None:
    from pipelines.local.serving import Serving, deploy, list_endpoints, stop_all

    root = tmp_path / "runs"
    archive = artifact(tmp_path / "slow.tar.gz", {"code/inference.py": SLOW})
    serving = Serving(environment={"SAGEMAKER_MODEL_SERVER_TIMEOUT": "20"})
    state = deploy(root, "busy", archive, "busy-v1", serving, log=lambda _: None)
    busy = threading.Thread(target=lambda: post(state["port"], b"slow", "application/json"))
    busy.start()
    try:
        time.sleep(0.5)
        again = deploy(root, "busy", archive, "busy-v2", serving, log=lambda _: None)
        assert again["pid"] == state["pid"] and again["port"] == state["port"]
        assert _servers_of(root / "endpoints" / "busy") == [state["pid"]]  # no second server, none orphaned
    finally:
        assert stop_all(root) == ["busy"]
        busy.join(timeout=60)
    assert _servers_of(root / "endpoints" / "busy") == []
    assert [e["status"] for e in list_endpoints(root)] == ["Stopped"]


@pytest.mark.parametrize("pid", [0, -1, 1, "self", "stranger"])
def test_stop_never_signals_a_process_it_did_not_start(tmp_path: Path, pid: object) -> None:
    from pipelines.local.serving import stop

    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
    try:
        value = {"self": os.getpid(), "stranger": stranger.pid}.get(str(pid), pid)
        directory = tmp_path / "runs" / "endpoints" / "e"
        directory.mkdir(parents=True)
        (directory / "endpoint.json").write_text(json.dumps({"name": "e", "pid": value, "port": 1}))
        assert stop(tmp_path / "runs", "e") is False
        assert stranger.poll() is None  # still running: it was never signalled
    finally:
        stranger.kill()
        stranger.wait()


# --------------------------------------------------------------------------- files, URIs and archives


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_a_link_leaving_a_mounted_bucket_is_refused_whatever_it_links(tmp_path: Path, kind: str) -> None:
    bucket, outside = tmp_path / "data", tmp_path / "private"
    (bucket / "set").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    (bucket / "set" / "ok.txt").write_text("ok")
    (bucket / "set" / "link").symlink_to(outside / "secret.txt" if kind == "file" else outside)
    store = ObjectStore(tmp_path / "s3", {"data": bucket})
    with pytest.raises(StoreError, match="is a link to .*outside its bucket"):
        store.download("s3://data/set/", tmp_path / "staged")
    assert not (tmp_path / "staged" / "link").exists()


def test_a_link_inside_the_bucket_is_followed(tmp_path: Path) -> None:
    bucket = tmp_path / "data"
    (bucket / "real").mkdir(parents=True)
    (bucket / "real" / "a.txt").write_text("a")
    (bucket / "set").mkdir()
    (bucket / "set" / "alias").symlink_to(bucket / "real")
    store = ObjectStore(tmp_path / "s3", {"data": bucket})
    assert [key for key, _ in store.objects("s3://data/set/")] == ["alias/a.txt"]


@pytest.mark.parametrize("uri", ["s3://b/digits?x=/../../outside", "s3://b/digits#../x", "s3://b/a?b"])
def test_a_uri_with_a_query_or_fragment_is_refused(tmp_path: Path, uri: str) -> None:
    with pytest.raises(StoreError, match="'\\?' and '#' are not allowed"):
        ObjectStore(tmp_path / "s3").path(uri)


def _tar_with(path: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        ok = tarfile.TarInfo("model_config.json")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"{}"))
        tar.addfile(member, io.BytesIO(data) if data else None)
    return path


def _member(kind: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo("../../escaped.txt" if kind == "traversal" else "member")
    if kind == "link":
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    elif kind == "link-out":
        info.type, info.linkname = tarfile.SYMTYPE, "../../../outside"
    elif kind == "device":
        info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
    else:
        info.size = 1
    return info


@pytest.mark.parametrize("kind", ["traversal", "link", "link-out", "device"])
def test_a_hostile_model_archive_is_refused_in_one_line_leaving_nothing_behind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    from pipelines.local.serving import EndpointError, deploy

    member = _member(kind)
    archive = _tar_with(tmp_path / "model.tar.gz", member, b"x" if member.isfile() else b"")
    root = tmp_path / "runs"
    with pytest.raises(EndpointError) as refused:
        deploy(root, "hostile", archive, "v1", log=lambda _: None)
    assert "the model archive is refused" in str(refused.value) and "\n" not in str(refused.value)
    assert list((root / "endpoints" / "hostile" / "models").iterdir()) == []  # nothing half-extracted
    assert not (tmp_path / "escaped.txt").exists()


# --------------------------------------------------------------------------- specs and overrides


def _validate(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes) -> tuple[int, str, float]:
    spec = tmp_path / "spec.yaml"
    spec.write_bytes(content)
    t0 = time.monotonic()
    code = main(["validate", str(spec)])
    return code, capsys.readouterr().err, time.monotonic() - t0


LAUGHS = b"a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + b"".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n".encode() for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("billion-laughs", LAUGHS, "expands to over 100,000 values"),
        ("huge-file", b"name: x\n" + b"#" * (2 * 1024 * 1024), "a spec is at most 1,048,576"),
        ("latin-1", "name: café\n".encode("latin-1"), "not UTF-8 text (byte 0xe9"),
        ("binary", b"\x00\xff\xfe\x89PNG", "not UTF-8 text"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 20 else "",
)
def test_a_spec_that_would_exhaust_the_machine_or_is_not_text_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: bytes, message: str
) -> None:
    code, err, seconds = _validate(tmp_path, capsys, content)
    assert code == 2 and message in err and "Traceback" not in err, err
    assert seconds < 10  # refused before anything expands it


def test_a_description_over_the_apis_limit_is_refused_at_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (ROOT / "config" / "digits.yaml").read_text()
    spec = "\n".join(line if not line.startswith("description:") else "description: " + "x" * 5000
                     for line in text.splitlines())  # fmt: skip
    code, err, _ = _validate(tmp_path, capsys, spec.encode())
    line = next(i for i, row in enumerate(spec.splitlines(), 1) if row.startswith("description:"))
    assert code == 2 and f"spec.yaml:{line}:" in err and "over the limit of 3072" in err, err


@pytest.mark.parametrize("value", ["nan", "-inf", "inf", "1e400", "१", "٣"])
def test_an_override_that_is_no_finite_ascii_number_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, value: str
) -> None:
    parameter = "Epochs" if not value[0].isascii() else "AccuracyThreshold"
    code = main(["local", "run", "config/digits.yaml", f"{parameter}={value}", "--root", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and f"parameter '{parameter}'" in err and "Traceback" not in err, err
    assert not (tmp_path / "executions").exists()  # nothing ran


def test_the_report_escapes_a_hostile_head_name(tmp_path: Path) -> None:
    from pipelines.report.html import render
    from pipelines.report.view import Evaluation, RunView

    evaluation = tmp_path / "evaluation"
    evaluation.mkdir()
    hostile = "<script>alert(1)</script>"
    (evaluation / "evaluation.json").write_text(json.dumps({"metrics": {f"recall_{hostile}": {"value": 0.5}}}))
    matrix = np.eye(40, dtype=int) * 3
    matrix[0, 1] = 2
    (evaluation / "confusion_matrices.json").write_text(json.dumps({hostile: {"matrix": matrix.tolist()}}))
    view = RunView("p", "id", "Succeeded", {"Steps": []}, {}, {}, evaluations={"ev": Evaluation("ev", evaluation)})
    page = render(view)
    assert hostile not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# --------------------------------------------------------------------------- the torchrun rendezvous


def test_a_distributed_jobs_processes_see_only_the_loopback_interface(tmp_path: Path) -> None:
    from pipelines.local.engine import Execution, LocalOptions
    from pipelines.local.runners.network import available
    from tests.test_toolkit import training_step
    from tests.tools.archives import put_source_archive

    if not available():
        pytest.skip("no network namespaces here (root and unshare are needed): the exposure is documented")
    script = ("import os, socket\nnames = ','.join(n for _, n in socket.if_nameindex())\n"
              "os.write(1, f'IFACES {names}\\n'.encode())\n")
    store = ObjectStore(tmp_path / "s3")
    put_source_archive(store, "s3://b/code/sourcedir.tar.gz", "ifaces.py", script)
    step = training_step("ifaces.py", {"sagemaker_torch_distributed_enabled": "true"}, channels=False)
    execution = Execution(tmp_path, {"Version": "2020-12-01", "Parameters": [], "Steps": [step]}, {}, store,
                          LocalOptions(nproc=2))  # fmt: skip
    assert execution.run() == "Succeeded", execution.failure
    log = (execution.step_dir(step["Name"]) / "log.txt").read_text()
    assert [line for line in log.splitlines() if "IFACES" in line] == ["IFACES lo"] * 2, log[-2000:]
    assert "network namespace with only the loopback interface" in log


def test_the_readme_names_every_test_of_this_corpus() -> None:
    readme = (ROOT / "README.md").read_text()
    names = [n for n in globals() if n.startswith("test_") and n != "test_the_readme_names_every_test_of_this_corpus"]
    assert len(names) >= 20
    for name in names:
        assert f"| `{name}` |" in readme, name
