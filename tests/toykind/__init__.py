"""A toy step kind, ``echo``, written as a new contributor would add one: one module per layer, each copied
into its place in a copy of the repository by `tests/test_seams.py`, plus one line in each layer's table.

It compiles to a definition Type no table names yet (``Callback``: the SDK knows only real Types), whose
request is shaped like CreateExperiment (so the service-model check has something to refuse), runs locally by
writing its message to the object store, summarises itself, keeps its output through ``local gc``, and is
described remotely by DescribeExperiment.
"""

# module here -> where it goes in the package
MODULES = {
    "spec.py": "pipelines/spec/echo.py",
    "compiler.py": "pipelines/compiler/echo.py",
    "runner.py": "pipelines/local/runners/echo.py",
    "remote.py": "pipelines/remote/jobs/echo.py",
    "outcome.py": "pipelines/report/outcomes/echo.py",
}
# each layer's table: (a line the import follows, the import), (a line the entry follows, the entry)
TABLES = {
    "pipelines/spec/pipeline.py": (
        ("from pipelines.spec.deploy import DeploySpec", "from pipelines.spec.echo import EchoSpec"),
        ("        DeploySpec,", "        EchoSpec,"),
    ),
    "pipelines/compiler/__init__.py": (
        ("from pipelines.compiler.deploy import compile_deploy", "from pipelines.compiler.echo import compile_echo"),
        ('    "deploy": compile_deploy,', '    "echo": compile_echo,'),
    ),
    "pipelines/local/runners/__init__.py": (
        ("from pipelines.local.runners.condition import ConditionRunner",
         "from pipelines.local.runners.echo import EchoRunner"),
        ('    "Endpoint": EndpointRunner(),', '    "Callback": EchoRunner(),'),
    ),
    "pipelines/remote/jobs/__init__.py": (
        ("from pipelines.remote.jobs.condition import ConditionStep, FailStep",
         "from pipelines.remote.jobs.echo import EchoStep"),
        ('    "Endpoint": EndpointStep(),', '    "Callback": EchoStep(),'),
    ),
    "pipelines/report/outcomes/__init__.py": (
        ("from pipelines.report.outcomes.condition import ConditionOutcome, FailOutcome",
         "from pipelines.report.outcomes.echo import EchoOutcome"),
        ('    "Endpoint": EndpointOutcome(),', '    "Callback": EchoOutcome(),'),
    ),
}  # fmt: skip
