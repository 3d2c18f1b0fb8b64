"""The shape of ``puller/`` in numbers: what issue 19 asks of the layout, measured.

    python3 tests/tools/shape.py [--limit-lines 700] [--limit-function 100]

Prints the subpackages, the modules over the line limit, the functions over the function
limit, every private name of another pypull module that a module reaches, and the longest
chain of imports between pypull's modules (every import that runs counts, also those inside
functions; those under ``if TYPE_CHECKING`` never run and do not).
Exits 1 when any limit is passed. Not a test: a reading for a closing note.

"A private name of another module" is a ``_name`` (not a dunder) that some other pypull
module defines (a function, class, module variable, or a ``self._name`` it assigns) and the
reaching module does not: ``from .x import _y``, ``x._y``, ``obj._y``. A name both define is
not counted (an object of the module's own kind); neither are the standard library's.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "puller"


def modules() -> dict[str, Path]:
    """Dotted name -> file, for every module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _resolve(name: str, node: ast.ImportFrom, package: str) -> str:
    """The absolute module an ``ImportFrom`` names, from the importing module's package."""
    if node.level == 0:
        return node.module or ""
    base = package.split(".")
    base = base[: len(base) - node.level + 1]
    return ".".join([*base, *(node.module.split(".") if node.module else [])])


def imports(name: str, path: Path, known: dict[str, Path], tree: ast.Module) -> set[str]:
    """The pypull modules ``name`` imports, anywhere in it."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    out: set[str] = set()
    typing_only = {
        id(child)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for stmt in node.body
        for child in ast.walk(stmt)
    }
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue  # for annotations only: never run
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(name, node, package)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in known:
                    out.add(sub)
                elif base in known:
                    out.add(base)
    out.discard(name)
    return out


def defined_private(tree: ast.Module) -> set[str]:
    """The ``_names`` a module defines: functions, classes, assignments, ``self._x = ...``."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def reached_private(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """``(line, name)`` of every private name the module reaches through an import or an
    attribute of something other than ``self``/``cls``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    yield node.lineno, alias.name
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            if node.attr.startswith("__"):
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            yield node.lineno, node.attr


def functions(tree: ast.Module) -> Iterator[tuple[str, int, int]]:
    """``(qualified name, first line, length)`` of every function and method."""

    def walk(node: ast.AST, prefix: str) -> Iterator[tuple[str, int, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                assert child.end_lineno is not None
                yield f"{prefix}{child.name}", first, child.end_lineno - first + 1
                yield from walk(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, f"{prefix}{child.name}.")
            else:
                yield from walk(child, prefix)

    yield from walk(tree, "")


def longest_chain(graph: dict[str, set[str]]) -> list[str]:
    """The longest simple path of imports (a depth-first search: the graph is small)."""
    best: list[str] = []
    memo: dict[str, list[str]] = {}

    def from_(node: str, on_path: frozenset[str]) -> list[str]:
        if node in memo and not (set(memo[node]) & on_path):
            return memo[node]
        longest: list[str] = []
        for nxt in sorted(graph.get(node, ())):
            if nxt in on_path:
                continue
            path = from_(nxt, on_path | {nxt})
            if len(path) > len(longest):
                longest = path
        result = [node, *longest]
        memo[node] = result
        return result

    for start in sorted(graph):
        path = from_(start, frozenset({start}))
        if len(path) > len(best):
            best = path
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit-lines", type=int, default=700)
    parser.add_argument("--limit-function", type=int, default=100)
    parser.add_argument("--limit-chain", type=int, default=10)
    args = parser.parse_args()
    known = modules()
    trees = {name: ast.parse(path.read_text(), str(path)) for name, path in known.items()}
    privates = {name: defined_private(tree) for name, tree in trees.items()}
    graph = {name: imports(name, known[name], known, trees[name]) for name in known}
    failed = False

    packages = sorted(
        name for name, path in known.items() if path.name == "__init__.py" and name != "puller"
    )
    print(f"subpackages ({len(packages)}): {', '.join(packages)}")
    failed |= len(packages) < 4

    sizes = {name: len(path.read_text().splitlines()) for name, path in known.items()}
    big = [(n, name) for name, n in sizes.items() if n > args.limit_lines]
    print(f"modules: {len(known)}; over {args.limit_lines} lines: {len(big)}")
    for n, name in sorted(big, reverse=True):
        print(f"  {name}: {n}")
    ordered = sorted(sizes.values())
    print(f"  largest {max(ordered)}, median {ordered[len(ordered) // 2]}")
    failed |= bool(big)

    long = [
        (length, f"{name}:{line} {qual}")
        for name, tree in trees.items()
        for qual, line, length in functions(tree)
        if length > args.limit_function
    ]
    print(f"functions over {args.limit_function} lines: {len(long)}")
    for length, where in sorted(long, reverse=True):
        print(f"  {where}: {length}")
    failed |= bool(long)

    reached = []
    for name, tree in trees.items():
        for line, attr in reached_private(tree):
            owners = [m for m, defined in privates.items() if attr in defined and m != name]
            if owners and attr not in privates[name]:
                reached.append(f"{name}:{line} {attr} (defined in {', '.join(owners)})")
    print(f"private names of another module reached: {len(reached)}")
    for where in reached:
        print(f"  {where}")
    failed |= bool(reached)

    chain = longest_chain(graph)
    print(f"longest import chain: {len(chain)} modules")
    print(f"  {' -> '.join(chain)}")
    failed |= len(chain) > args.limit_chain
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
