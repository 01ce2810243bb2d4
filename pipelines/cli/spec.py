"""Spec commands: check a spec, draw it, compile it (``validate``, ``graph``, ``definition``)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from pipelines.cli.common import BUILD, CONFIG, Group, compile_spec, option

group = Group()


@group.command("validate", "check a spec and the requests it compiles to (make validate)", CONFIG,
               option("--json", action="store_true", help="the result (or the problems) as JSON"))  # fmt: skip
def validate(args: argparse.Namespace) -> int:
    from pipelines.loader import SpecError

    try:
        spec = compile_spec(args.config).spec  # the spec, and every request it compiles to against the API's model
    except SpecError as exc:
        if not args.json:
            raise
        problems = [dataclasses.asdict(issue) for issue in exc.issues]
        print(json.dumps({"config": args.config, "ok": False, "problems": problems}, indent=2))
        return 2
    warnings = spec_warnings(args.config, spec)
    if args.json:
        print(json.dumps({
            "config": args.config, "ok": True, "pipeline": spec.name, "warnings": warnings,
            "steps": [{"name": s.name, "kind": s.kind} for s in spec.steps],
            "parameters": {n: {"type": p.type, "default": p.default} for n, p in spec.parameters.items()},
        }, indent=2, default=str))  # fmt: skip
        return 0
    for w in warnings:
        print(f"{w['file']}:{w['line']}:{w['column']}: warning: {w['key']}: {w['rule']}\n    fix: {w['fix']}",
              file=sys.stderr)  # fmt: skip
    kinds = ", ".join(f"{s.name} ({s.kind})" for s in spec.steps)
    print(f"{args.config}: ok: pipeline '{spec.name}', {len(spec.steps)} steps: {kinds}")
    return 0


def spec_warnings(config: str, spec: object) -> list[dict[str, object]]:
    """What validate warns about without refusing the spec: metric regexes that match several of the lines
    their script prints (`pipelines.spec.scripts.metric_regex_warnings`), at their spec lines."""
    from pipelines.loader import format_path, read_yaml
    from pipelines.spec.scripts import metric_regex_warnings

    found = metric_regex_warnings(spec)
    if not found:
        return []
    _, positions = read_yaml(Path(config))
    out = []
    for path, rule, fix in found:
        line, column = positions.at(path)
        out.append({"file": config, "line": line, "column": column, "key": format_path(path), "rule": rule,
                    "fix": fix})  # fmt: skip
    return out


@group.command("graph", "draw the compiled pipeline as SVG and PNG (make pipeline-graph)", CONFIG,
               option("--out", help="SVG file, the PNG beside it (default build/<pipeline>-graph.svg)"))
def graph(args: argparse.Namespace) -> int:
    from pipelines.report import graph as drawing

    compiled = compile_spec(args.config)
    out = Path(args.out) if args.out else BUILD / f"{compiled.name}-graph.svg"
    written = drawing.write(json.loads(compiled.definition), out, title=compiled.name)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


@group.command("definition", "compile a spec to its definition JSON (make pipeline-definition)", CONFIG,
               option("--out", help="output file (default build/<pipeline>.json)"))  # fmt: skip
def definition(args: argparse.Namespace) -> int:
    compiled = compile_spec(args.config)
    out = Path(args.out) if args.out else BUILD / f"{compiled.name}.json"
    compiled.write(out)
    print(f"wrote {out} ({len(compiled.definition):,} bytes, code {compiled.code.digest})")
    return 0
