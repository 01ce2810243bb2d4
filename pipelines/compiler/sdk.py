"""The SageMaker SDK v2, loaded as compiling needs it and no more.

``import sagemaker`` costs 1.4 s and 200 MB on this project's machine, and a compile another 1.3 s in two
``Session`` objects. Almost none of it is compiling. So the SDK is loaded *lean*, and nothing it emits changes
(`tests/test_compiler.py` compares a lean compile with a full one, and the goldens hold):

* the package's ``__init__`` (which imports every algorithm, AutoML, analytics, local mode...) is not run:
  ``sagemaker`` is a module whose attributes import on first use, and only the modules the compiler names are
  imported;
* modules nothing in a compile runs (`UNUSED`: numpy (and with it OpenBLAS's threads), jsonschema, requests,
  pandas, scipy, sagemaker-core's shapes, the debugger's rules, local mode, Spark, remote functions, the Amazon
  algorithms...) are *placeholders* while the SDK loads. Their names resolve, but a call or an instantiation
  raises `SdkUnavailable`, naming the module. Once loaded, they are dropped from ``sys.modules``, so any later
  import in the process gets the real one. What the SDK imports inside the functions a compile calls is
  imported during the load too (`CALLED`), so that it loads lean as well;
* no botocore client is built while compiling (`offline_clients`): a `Session` makes six of them, and JumpStart
  makes one more Session at import. A client loads its service model (several MB of JSON), and a compile never
  calls AWS. The stand-in refuses any call, naming it;
* the SDK's configuration is the project's constant `SDK_CONFIG` (telemetry off, no user or admin defaults, as
  `context.sdk_environment` always set it through a file), without re-checking it against its JSON schema on
  every lookup (0.15 s each).

``SMP_FULL_SDK=1`` imports the SDK whole instead, as it would be imported anywhere else.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipelines.errors import UserError

FULL = "SMP_FULL_SDK"
# what the SDK's configuration holds while compiling: telemetry off, nothing else (no user or admin defaults)
SDK_CONFIG: dict[str, Any] = {"SchemaVersion": "1.0",
                              "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}  # fmt: skip
# modules no compile runs: they are imported by the SDK's own modules, for other features
UNUSED = ("numpy", "jsonschema", "requests", "smdebug_rulesconfig", "pandas", "scipy", "sagemaker_core", "omegaconf",
          "sagemaker.local", "sagemaker.spark", "sagemaker.serve", "sagemaker.remote_function", "sagemaker.amazon",
          "sagemaker.analytics", "sagemaker.feature_store", "sagemaker.partner_app")  # fmt: skip
# imported first: the SDK's lineage modules import each other while defining classes, and import cleanly only
# in this order (the package's __init__ happens to import them so)
FIRST = ("sagemaker.lineage.artifact",)
# what the compiler uses (compiler/*.py import from these)
NEEDED = ("sagemaker.workflow.pipeline", "sagemaker.workflow.steps", "sagemaker.workflow.condition_step",
          "sagemaker.workflow.conditions", "sagemaker.workflow.endpoint_step", "sagemaker.workflow.fail_step",
          "sagemaker.workflow.functions", "sagemaker.workflow.model_step", "sagemaker.workflow.parameters",
          "sagemaker.workflow.pipeline_context", "sagemaker.workflow.pipeline_experiment_config",
          "sagemaker.workflow.properties", "sagemaker.workflow.retry", "sagemaker.workflow.execution_variables",
          "sagemaker.processing", "sagemaker.pytorch", "sagemaker.tuner", "sagemaker.model",
          "sagemaker.model_metrics", "sagemaker.inputs", "sagemaker.image_uris", "sagemaker.utils",
          "sagemaker.session", "sagemaker.config", "sagemaker.automl.automl", "sagemaker.workflow.automl_step",
          "sagemaker.transformer")  # fmt: skip
# what the SDK imports inside the functions a compile calls (`utils.check_and_get_run_experiment_config`, and
# `estimator`'s ``isinstance(estimator, sagemaker.algorithm.AlgorithmEstimator)``): imported up front, so that
# they load lean too (the experiments' run module would import numpy, the algorithm module the Amazon algorithms)
CALLED = ("sagemaker.experiments._run_context", "sagemaker.algorithm")


class SdkUnavailable(UserError):
    """A part of the SDK the lean load left out was used while compiling."""


class _Placeholder(type):
    """A stand-in class: any attribute is another stand-in; calling or instantiating one raises."""

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        value = _placeholder(cls.__module__, f"{cls.__qualname__}.{name}")
        setattr(cls, name, value)
        return value

    def __getitem__(cls, item: Any) -> Any:  # annotations such as Placeholder[int]
        return cls

    def __or__(cls, other: Any) -> Any:  # annotations such as Placeholder | None
        return cls

    def __ror__(cls, other: Any) -> Any:
        return cls


def _placeholder(module: str, name: str) -> Any:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise SdkUnavailable(f"compiling used {module}.{name}, which the lean SDK load leaves out; "
                             f"set {FULL}=1 to import the SageMaker SDK whole (and say so in an issue)")  # fmt: skip

    placeholder = _Placeholder(name.rsplit(".", 1)[-1], (), {"__init__": refuse, "__module__": module})
    placeholder.__qualname__ = name
    return placeholder


class _PlaceholderModule(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        value = _placeholder(self.__name__, name)
        setattr(self, name, value)
        return value


class _PlaceholderLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = _PlaceholderModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        return None


class _PlaceholderFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if any(name == unused or name.startswith(unused + ".") for unused in UNUSED):
            return importlib.machinery.ModuleSpec(name, _PlaceholderLoader(), is_package=True)
        return None


def _lazy_package() -> types.ModuleType:
    """``sagemaker`` without running its ``__init__``: each name the real one exports imports on first use."""
    spec = importlib.util.find_spec("sagemaker")
    if spec is None or spec.origin is None:
        raise SdkUnavailable("the SageMaker SDK is not installed: make install")
    root = Path(spec.origin).parent
    exports: dict[str, tuple[str, str]] = {}
    for node in ast.parse((root / "__init__.py").read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sagemaker"):
            for alias in node.names:
                exports[alias.asname or alias.name] = (node.module, alias.name)
    package = types.ModuleType("sagemaker")
    package.__path__, package.__file__, package.__spec__ = [str(root)], spec.origin, spec
    package.__package__ = "sagemaker"

    def attribute(name: str) -> Any:
        if name == "__version__":
            from importlib.metadata import version

            return version("sagemaker")
        if name in exports:
            module, member = exports[name]
            value = importlib.import_module(f"sagemaker.{member}") if module == "sagemaker" else getattr(
                importlib.import_module(module), member)  # fmt: skip
        else:
            try:
                value = importlib.import_module(f"sagemaker.{name}")
            except ModuleNotFoundError:
                raise AttributeError(name) from None
        setattr(package, name, value)
        return value

    package.__getattr__ = attribute  # type: ignore[attr-defined,method-assign]  # PEP 562
    return package


def load() -> None:
    """Import what compiling needs of the SDK (once per process): lean, or whole with ``SMP_FULL_SDK=1`` or when
    the process already imported it whole."""
    if "sagemaker.workflow.pipeline" in sys.modules:
        return
    share_service_models()
    if os.environ.get(FULL) or "sagemaker" in sys.modules:
        _use_constant_config()
        for name in NEEDED:
            importlib.import_module(name)
    else:
        finder = _PlaceholderFinder()
        sys.meta_path.insert(0, finder)
        try:
            sys.modules["sagemaker"] = _lazy_package()
            _use_constant_config()  # before any module takes its own reference to the functions
            with _one_botocore_session():
                for name in (*FIRST, *NEEDED, *CALLED):
                    importlib.import_module(name)
        except BaseException:
            for name in [m for m in sys.modules if m == "sagemaker" or m.startswith("sagemaker.")]:
                del sys.modules[name]  # a failed lean load leaves nothing half-imported
            raise
        finally:
            sys.meta_path.remove(finder)
            for name in [m for m, module in sys.modules.items() if isinstance(module, _PlaceholderModule)]:
                del sys.modules[name]  # a later import anywhere gets the real module
    _use_constant_config()  # and in the modules imported since, which took references of their own


@contextlib.contextmanager
def _one_botocore_session() -> Iterator[None]:
    """While the SDK's modules load, the boto3 sessions they make share one botocore session.

    ``sagemaker.jumpstart.constants`` makes three at import: two to read the default region, one inside the
    default JumpStart ``Session`` (its clients are `OfflineClient`, and no compile uses it). Each botocore
    session registers botocore's few hundred event handlers: 4 ms apiece. The values the SDK reads from them are
    the same: the region comes from the environment, and the third session sets the region the first two
    resolved (or JumpStart's default)."""
    import botocore.session

    make = botocore.session.get_session
    made: list[Any] = []

    def get_session(env_vars: Any = None) -> Any:
        if env_vars is not None:
            return make(env_vars)
        if not made:
            made.append(make())
        return made[0]

    botocore.session.get_session = get_session
    try:
        yield
    finally:
        botocore.session.get_session = make


def share_service_models() -> None:
    """One parse of each botocore service model per process: botocore's ``Loader`` caches per instance, and the
    SDK (``workflow.properties``, at import) and the request checks (`pipelines.requests.model`) each make one
    to read the same SageMaker model (several MB of JSON). And botocore's data files parse into plain dicts
    (`_plain_json_files`), except with ``SMP_FULL_SDK=1``, the reference the lean load is compared with."""
    import botocore.loaders

    loader = botocore.loaders.Loader
    if getattr(loader.load_service_model, "_shared", False):
        return
    if not os.environ.get(FULL):
        loader.FILE_LOADER_CLASS = _plain_json_files()
    original = loader.load_service_model
    parsed: dict[tuple[Any, ...], Any] = {}

    def load_service_model(self: Any, service_name: str, type_name: str, api_version: str | None = None) -> Any:
        key = (service_name, type_name, api_version, tuple(self.search_paths))
        if key not in parsed:
            known = _load_listed(self, service_name, type_name, api_version)
            parsed[key] = known if known is not None else original(self, service_name, type_name, api_version)
        return parsed[key]

    load_service_model._shared = True  # type: ignore[attr-defined]
    load_service_model.__wrapped__ = original  # type: ignore[attr-defined]
    loader.load_service_model = load_service_model  # type: ignore[method-assign]


def _plain_json_files() -> type:
    """botocore's JSON file loader (``botocore.loaders.JSONFileLoader``), parsing into plain dicts, which keep
    their order too, rather than the OrderedDicts botocore builds (a Python 2 habit, and twice as slow to
    build): the SageMaker model a compile reads parses in 12 ms instead of 17, the endpoints data the SDK's
    image lookup reads (``image_uris.retrieve``) in 5 instead of 11. Neither botocore nor the SDK uses what only
    an OrderedDict has (``move_to_end``, ordered equality) on them."""
    import gzip
    import json

    import botocore.loaders

    # botocore's own extensions and openers, in its order (a plain .json before a .json.gz)
    openers = getattr(botocore.loaders, "_JSON_OPEN_METHODS", {".json": open, ".json.gz": gzip.open})

    class PlainJSONFileLoader(botocore.loaders.JSONFileLoader):  # type: ignore[misc]
        def load_file(self, file_path: str) -> Any:
            for extension, opener in openers.items():
                path = file_path + extension
                if os.path.isfile(path):
                    with opener(path, "rb") as file:
                        return json.loads(file.read().decode("utf-8"))
            return None

    return PlainJSONFileLoader


def _load_listed(loader: Any, service_name: str, type_name: str, api_version: str | None) -> Any:
    """botocore's ``Loader.load_service_model`` (botocore/loaders.py) without its first step, which checks that
    the service is one botocore knows by listing every service it ships (450 directories, 9 ms of a compile):
    the same latest version, data and extras. ``None`` where that does not find the model (an unknown service
    or model type, another botocore's internals): the caller then asks botocore's own method, whose error
    that is."""
    from botocore.exceptions import DataNotFoundError

    try:
        version = api_version or loader.determine_latest_version(service_name, type_name)
        model = loader.load_data(os.path.join(service_name, version, type_name))
        loader._extras_processor.process(model, loader._find_extras(service_name, type_name, version))
    except (DataNotFoundError, AttributeError):
        return None
    return model


def _use_constant_config() -> None:
    """The SDK reads `SDK_CONFIG`: no file, and no schema check of a constant that a test checks once."""
    import sagemaker.config
    import sagemaker.config.config as config_module

    def load_config(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return SDK_CONFIG

    def validate_config(config: dict | None = None) -> None:
        if config is not SDK_CONFIG:
            schema_check(config)

    for module in (config_module, sagemaker.config, sys.modules.get("sagemaker.session"),
                   sys.modules.get("sagemaker.utils")):  # fmt: skip
        if module is None:
            continue
        if hasattr(module, "load_sagemaker_config"):
            module.load_sagemaker_config = load_config  # type: ignore[attr-defined]
        if hasattr(module, "validate_sagemaker_config"):
            module.validate_sagemaker_config = validate_config  # type: ignore[attr-defined]


def schema_check(config: dict | None) -> None:
    """The SDK's own check of a configuration (``sagemaker.config.config.validate_sagemaker_config``), with the
    real ``jsonschema``: the lean load leaves it out of the SDK's modules, which never need it for `SDK_CONFIG`."""
    import jsonschema
    from sagemaker.config.config_schema import SAGEMAKER_PYTHON_SDK_CONFIG_SCHEMA

    jsonschema.validate(config, SAGEMAKER_PYTHON_SDK_CONFIG_SCHEMA)


class OfflineClient:
    """What a compile gets for a boto3 client: its region, and a refusal of any call (a compile calls no AWS)."""

    def __init__(self, service: str, region: str | None):
        self.service = service
        self.meta = types.SimpleNamespace(region_name=region, config=None, service_model=None)

    def __getattr__(self, name: str) -> Any:
        def refuse(*args: Any, **kwargs: Any) -> None:
            raise SdkUnavailable(f"compiling tried to call AWS ({self.service}.{name}); a compile calls nothing")

        return refuse


@contextlib.contextmanager
def offline_clients() -> Iterator[None]:
    """While compiling, boto3 sessions hand out `OfflineClient` instead of building clients."""
    import boto3.session

    cls = boto3.session.Session
    saved = cls.client, cls.resource

    def client(self: Any, service_name: str, region_name: str | None = None, *args: Any, **kwargs: Any) -> Any:
        return OfflineClient(service_name, region_name or self.region_name)

    cls.client, cls.resource = client, client  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        cls.client, cls.resource = saved  # type: ignore[method-assign]
