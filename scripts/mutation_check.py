"""Mutation check of pure modules: does any test notice when the code is subtly wrong?

For each module given, every comparison, arithmetic and boolean operator, and every small integer
or boolean constant is mutated in turn (``<`` → ``<=``, ``+`` → ``-``, ``and`` → ``or``, ``0`` →
``1``, ``True`` → ``False`` …); the chosen tests run against each mutant in a copy of the
repository (the working tree is never touched, so running trainings are safe). A mutant the tests
do not kill is printed with its line: a test that does not look at that result.

    .venv/bin/python scripts/mutation_check.py tiles/qml.py geobert/change/metrics.py \\
        [--tests tests/tiles/test_qml.py tests/test_doctests.py] [--timeout 120]
        [--functions _tile_function ...] [--lines 103 110 ...] [--marks EXPR] [-v]

Without ``--tests`` each module runs the doctests and the test files that import it;
``--functions`` mutates only the bodies of the functions (or methods) of those names — for the
modules whose tests take minutes a mutant, such as the pipelines' tile functions; ``-v`` prints
every mutant's fate as it is known (a long run's log then tells how far it got); ``--lines``
mutates only the lines given (to run a first pass's survivors again, e.g. with ``--marks ''``,
which adds the cluster and QGIS tests the default leaves out for speed). Writes
nothing but a temporary copy; exit status 1 when a mutant survives.
"""

from __future__ import annotations

import argparse
import ast
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPY = ("geobert", "tiles", "tests", "examples", "pyproject.toml")

_SWAPS: dict[type, type] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div,
    ast.And: ast.Or,
    ast.Or: ast.And,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}


def _targets(tree: ast.AST) -> Iterator[tuple[ast.AST, str, int]]:
    """Every mutable node: (node, field or '', index in a list field or -1)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                if type(op) in _SWAPS:
                    yield node, "ops", i
        elif isinstance(node, ast.BinOp | ast.AugAssign | ast.BoolOp) and type(node.op) in _SWAPS:
            yield node, "op", -1
        elif isinstance(node, ast.Constant) and (
            isinstance(node.value, bool) or (type(node.value) is int and -2 <= node.value <= 255)
        ):
            yield node, "value", -1


def _docstring_lines(tree: ast.AST) -> set[int]:
    """Lines of docstrings (their doctests are tests, not code to mutate)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef):
            doc = node.body[0] if node.body else None
            if isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant):
                lines.update(range(doc.lineno, (doc.end_lineno or doc.lineno) + 1))
    return lines


def _function_lines(tree: ast.AST, names: set[str]) -> set[int]:
    """Lines of the functions and methods called one of ``names`` (nested ones included)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in names:
            lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return lines


def mutants(
    source: str, functions: set[str] | None = None, lines: set[int] | None = None
) -> Iterator[tuple[int, str, str]]:
    """(line, description, mutated source) for each mutation of ``source`` (only inside the
    functions named in ``functions`` and on the ``lines`` given, when given)."""
    tree = ast.parse(source)
    skip = _docstring_lines(tree)
    only = _function_lines(tree, functions) if functions else None
    if lines is not None:
        only = lines if only is None else only & lines
    n = sum(1 for _ in _targets(tree))
    for k in range(n):
        tree = ast.parse(source)
        node, field, idx = list(_targets(tree))[k]
        line = getattr(node, "lineno", 0)
        if line in skip or (only is not None and line not in only):
            continue
        if field == "value":
            old = node.value  # type: ignore[attr-defined]
            new = (not old) if isinstance(old, bool) else (old + 1 if old != 1 else 0)
            node.value = new  # type: ignore[attr-defined]
            what = f"{old!r} → {new!r}"
        elif field == "ops":
            old_op = node.ops[idx]  # type: ignore[attr-defined]
            node.ops[idx] = _SWAPS[type(old_op)]()  # type: ignore[attr-defined]
            what = f"{type(old_op).__name__} → {_SWAPS[type(old_op)].__name__}"
        else:
            old_op = node.op  # type: ignore[attr-defined]
            node.op = _SWAPS[type(old_op)]()  # type: ignore[attr-defined]
            what = f"{type(old_op).__name__} → {_SWAPS[type(old_op)].__name__}"
        yield line, what, ast.unparse(tree)


def tests_for(module: Path) -> list[str]:
    dotted = ".".join(module.with_suffix("").parts)
    found = [
        str(p.relative_to(ROOT))
        for p in sorted((ROOT / "tests").rglob("test_*.py"))
        if dotted in p.read_text(encoding="utf-8")
    ]
    return ["tests/test_doctests.py", *found]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("modules", nargs="+", help="module files, relative to the repository")
    ap.add_argument("--tests", nargs="+", default=None, help="test files (default: see above)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per mutant's tests")
    ap.add_argument(
        "--functions", nargs="+", default=None, help="mutate only inside functions of these names"
    )
    ap.add_argument(
        "--lines", nargs="+", type=int, default=None, help="mutate only these lines (survivors)"
    )
    ap.add_argument(
        "--marks",
        default="not qgis and not cluster",
        help="pytest -m expression of the tests run (default: %(default)s); '' runs all",
    )
    ap.add_argument("-v", "--verbose", action="store_true", help="print killed mutants too")
    args = ap.parse_args()
    survivors = 0
    picked = set(args.functions) if args.functions else None
    lines = set(args.lines) if args.lines else None
    with tempfile.TemporaryDirectory(prefix="geobert-mutants-") as tmp:
        work = Path(tmp)
        for name in COPY:
            src = ROOT / name
            if src.is_dir():
                shutil.copytree(src, work / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(src, work / name)
        for module in args.modules:
            rel = Path(module)
            original = (ROOT / rel).read_text(encoding="utf-8")
            tests = args.tests or tests_for(rel)
            cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
            cmd += ["-m", args.marks] if args.marks else []
            base = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
            if base.returncode != 0:
                print(f"{module}: the tests fail without any mutation:\n{base.stdout[-2000:]}")
                return 2
            killed = total = 0
            for line, what, text in mutants(original, picked, lines):
                total += 1
                (work / rel).write_text(text, encoding="utf-8")
                try:
                    res = subprocess.run(
                        cmd, cwd=work, capture_output=True, text=True, timeout=args.timeout
                    )
                    dead = res.returncode != 0
                except subprocess.TimeoutExpired:
                    dead = True  # a hang is noticed too
                killed += dead
                if not dead:
                    survivors += 1
                    print(f"SURVIVED {module}:{line}: {what}", flush=True)
                elif args.verbose:
                    print(f"killed {module}:{line}: {what}", flush=True)
            (work / rel).write_text(original, encoding="utf-8")
            if total == 0:
                print(
                    f"{module}: no mutant (check --functions {args.functions} and "
                    f"--lines {args.lines})"
                )
                return 2
            print(f"{module}: {killed}/{total} mutants killed by {' '.join(tests)}")
    return 1 if survivors else 0


if __name__ == "__main__":
    raise SystemExit(main())
