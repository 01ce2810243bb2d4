"""The local endpoint serves a model as SageMaker's PyTorch inference container does (sagemaker-inference and
sagemaker-pytorch-inference, the toolkits themselves): the default handlers and their content types, what
``input_fn`` receives, the Accept default, which errors carry a status, the response limit, and ``invoke``
reporting a container's error as SageMaker's runtime does."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pipelines.cli import main
from tests.tools.endpoints import artifact, post

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")

ECHO = """
import json
def model_fn(model_dir):
    return "echo"
def input_fn(body, content_type):
    return {"type": type(body).__name__, "content_type": content_type}
def predict_fn(data, model):
    return data
def output_fn(prediction, accept):
    return json.dumps(prediction | {"accept": accept})
"""

ERRORS = """
from sagemaker_inference import errors
def model_fn(model_dir):
    return None
def transform_fn(model, body, content_type, accept):
    text = body.decode() if isinstance(body, (bytes, bytearray)) else body
    if text == "teapot":
        raise errors.GenericInferenceToolkitError(418, "short and stout")
    if text == "huge":
        return "x" * (7 * 1024 * 1024), "text/plain"
    raise ValueError("not the toolkit's error: " + text)
"""


def _torchscript() -> bytes:
    """``model.pt``: a TorchScript module doubling its input, as the default model_fn loads one."""
    import torch

    class Double(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2

    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(Double()), buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    """Three local endpoints: the default handlers over a TorchScript model (default Accept: CSV), an echo of
    what the handlers receive, and one whose handlers fail."""
    from pipelines.local.serving import Serving, deploy, stop_all

    tmp = tmp_path_factory.mktemp("toolkit")
    root = tmp / "runs"
    archives = {
        "default": (artifact(tmp / "default.tar.gz", {"model.pt": _torchscript()}),
                    {"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv"}),
        "echo": (artifact(tmp / "echo.tar.gz", {"code/inference.py": ECHO}), {}),
        "errors": (artifact(tmp / "errors.tar.gz", {"code/inference.py": ERRORS}), {}),
    }  # fmt: skip
    ports = {}
    try:
        for name, (archive, environment) in archives.items():
            ports[name] = deploy(root, name, archive, f"{name}-v1", Serving(environment), log=lambda _: None)["port"]
        yield ports | {"root": root}  # type: ignore[dict-item]
    finally:
        stop_all(root)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_the_default_handlers_load_model_pt_and_speak_json_csv_and_npy(endpoints: dict[str, int]) -> None:
    port = endpoints["default"]
    status, _, body = post(port, b"[[1, 2], [3, 4]]", "application/json", accept="application/json")
    assert status == 200 and json.loads(body) == [[2.0, 4.0], [6.0, 8.0]]
    status, _, body = post(port, b"1,2\n3,4", "text/csv", accept="text/csv")
    assert status == 200 and body.decode().split() == ["2.0,4.0", "6.0,8.0"]
    status, _, body = post(port, _npy(np.array([[1.0, 2.0]], np.float32)), "application/x-npy",
                           accept="application/x-npy")  # fmt: skip
    assert status == 200 and np.load(io.BytesIO(body)).tolist() == [[2.0, 4.0]]
    # NPZ is the toolkit's sparse-matrix format (scipy.sparse.save_npz); the PyTorch default input_fn cannot make
    # a tensor of one, and the container answers 500 as here (an input_fn of one's own takes it)
    import scipy.sparse

    npz = io.BytesIO()
    scipy.sparse.save_npz(npz, scipy.sparse.csr_matrix(np.eye(2, dtype=np.float32)))
    status, message, _ = post(port, npz.getvalue(), "application/x-npz", accept="application/json")
    assert status == 500 and "csr" in message.lower() + _.decode(errors="replace").lower()


def test_no_accept_or_any_takes_the_models_default_accept(endpoints: dict[str, int]) -> None:
    """A missing Accept header, or */*, is SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT (here text/csv)."""
    for accept in (None, "*/*"):
        status, _, body = post(endpoints["default"], b"[[1, 2]]", "application/json", accept=accept)
        assert status == 200 and body.decode().strip() == "2.0,4.0", (accept, body)


def test_an_unsupported_content_type_is_a_500_as_the_container_answers_it(endpoints: dict[str, int]) -> None:
    """The toolkit's UnsupportedFormatError is no BaseInferenceToolkitError: it carries no status, so 500."""
    status, message, _ = post(endpoints["default"], b"<a/>", "application/xml")
    assert status == 500 and "Content type application/xml is not supported by this framework" in message


def test_json_and_csv_reach_input_fn_as_str_and_no_content_type_as_none(endpoints: dict[str, int]) -> None:
    port = endpoints["echo"]
    seen = {}
    for content_type in ("application/json", "text/csv", "application/x-npy", None):
        status, _, body = post(port, b"[1]", content_type, accept="application/json")
        assert status == 200, body
        seen[content_type] = json.loads(body)
    assert seen["application/json"]["type"] == seen["text/csv"]["type"] == "str"
    assert seen["application/x-npy"]["type"] in ("bytes", "bytearray")
    assert seen[None]["content_type"] is None
    assert seen["application/json"]["accept"] == "application/json"


def test_only_the_toolkits_error_carries_its_status_and_anything_else_is_a_500(endpoints: dict[str, int]) -> None:
    port = endpoints["errors"]
    status, message, _ = post(port, b"teapot", "text/plain")
    assert status == 418 and "short and stout" in message
    status, message, _ = post(port, b"boom", "text/plain")
    assert status == 500 and "not the toolkit's error: boom" in message


def test_a_response_over_6_mb_is_refused(endpoints: dict[str, int]) -> None:
    status, message, _ = post(endpoints["errors"], b"huge", "text/plain")
    assert status == 500 and "SageMaker returns at most 6291456" in message


def test_invoke_reports_a_container_error_as_the_runtimes_model_error(
    endpoints: dict[str, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    request = tmp_path / "teapot.json"
    request.write_text("teapot")
    code = main(["invoke", "errors", str(request), "--local", "--root", str(endpoints["root"])])
    err = capsys.readouterr().err
    assert code == 1
    assert 'ModelError (424): Received client error (418) from primary with message "short and stout' in err
    assert "(OriginalStatusCode 418)" in err


def test_redeploying_the_same_artifact_keeps_the_loaded_model_under_the_new_configuration(tmp_path: Path) -> None:
    """A rerun's deploy (a new endpoint configuration of the same bytes and environment) renames what is in
    service instead of loading the model again in a new worker."""
    import psutil

    from pipelines.local.serving import deploy, ping, stop

    root = tmp_path / "runs"
    archive = artifact(tmp_path / "echo.tar.gz", {"code/inference.py": ECHO})
    state = deploy(root, "same", archive, "same-v1", log=lambda _: None)
    try:
        workers = {p.pid for p in psutil.Process(state["pid"]).children()}
        again = deploy(root, "same", archive, "same-v2", log=lambda _: None)
        assert again["pid"] == state["pid"] and ping(state["port"]) == "same-v2"
        assert {p.pid for p in psutil.Process(state["pid"]).children()} == workers  # no new worker started
        other = artifact(tmp_path / "other.tar.gz", {"code/inference.py": ECHO + "\n# another model\n"})
        deploy(root, "same", other, "same-v3", log=lambda _: None)
        assert ping(state["port"]) == "same-v3"
        assert {p.pid for p in psutil.Process(state["pid"]).children()} != workers  # another model: a new worker
    finally:
        stop(root, "same")
