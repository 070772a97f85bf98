"""``python -m benchmarks NAME [--quick] [--json]``: run one benchmark and print its result.

Discovery is by reading, not importing: any ``benchmarks/*.py`` with a top-level ``def run``
is listed, so listing stays fast and works even when one benchmark's optional dependencies
are missing. With ``--json`` stdout carries exactly one JSON object (everything else,
including stray prints from libraries, goes to stderr); without it, a readable table.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import json
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchmarks import environment, log

PACKAGE_DIR = Path(__file__).resolve().parent


def discover() -> dict[str, str]:
    """Benchmark name -> first docstring line, for every module defining ``run``."""
    found = {}
    for path in sorted(PACKAGE_DIR.glob("*.py")):
        if path.name.startswith("_"):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, UnicodeDecodeError):
            continue
        if any(isinstance(node, ast.FunctionDef) and node.name == "run" for node in tree.body):
            doc = (ast.get_docstring(tree) or "").strip().splitlines()
            found[path.stem] = doc[0] if doc else ""
    return found


def _usage(available: Mapping[str, str], problem: str) -> int:
    lines = [problem, "usage: python -m benchmarks NAME [--quick] [--json]", "available:"]
    width = max((len(n) for n in available), default=0)
    lines += [f"  {name.ljust(width)}  {doc}" for name, doc in available.items()]
    print("\n".join(lines), file=sys.stderr)
    return 2


def to_jsonable(value: Any) -> Any:
    """Plain JSON types: numpy scalars/arrays converted, NaN/inf (no JSON form) -> None."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy scalars and arrays
        return to_jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list) and len(value) > 6:
        return f"[{len(value)} values]"
    return str(value)


def _flatten(row: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def render_generic(result: Mapping[str, Any]) -> str:
    """Key/value blocks for params, each result row, ratios and the environment."""
    out = [f"benchmark: {result.get('benchmark')}"]
    sections: list[tuple[str, Any]] = [("params", result.get("params", {}))]
    sections += [(f"result {i}", r) for i, r in enumerate(result.get("results", []))]
    sections += [("ratios", result.get("ratios", {})), ("environment", result.get("environment"))]
    for title, body in sections:
        out.append(f"\n{title}:")
        flat = _flatten(body) if isinstance(body, Mapping) else {"value": body}
        width = max((len(k) for k in flat), default=0)
        out += [f"  {k.ljust(width)}  {_fmt(v)}" for k, v in flat.items()]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", add_help=True)
    parser.add_argument("name", nargs="?", help="benchmark to run (omit to list them)")
    parser.add_argument("--quick", action="store_true", help="small grid, under a minute")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = parser.parse_args(argv)
    available = discover()
    if args.name is None:
        return _usage(available, "no benchmark named")
    if args.name not in available:
        return _usage(available, f"unknown benchmark {args.name!r}")

    module = importlib.import_module(f"benchmarks.{args.name}")
    log(f"running benchmark {args.name!r} ({'quick' if args.quick else 'full'})")
    with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the one JSON object
        result = dict(module.run(args.quick))
    result.setdefault("benchmark", args.name)
    result["environment"] = {**environment(), **(result.get("environment") or {})}
    result = to_jsonable(result)
    if args.json:
        print(json.dumps(result, indent=2, allow_nan=False))
    else:
        render = getattr(module, "render", None)
        print(render(result) if callable(render) else render_generic(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
