#!/usr/bin/env python3
"""Measure lowshot's structure from its source: layers, import circles, sizes.

The package is layered; a module may import from its own layer or from layers below it:

    core -> data -> backbones/cache -> training -> families -> pipeline -> api -> cli

This script parses every module under ``src/lowshot`` (no import is executed), builds the
internal import graph (imports inside functions included: hiding an import in a function
does not change the structure) and reports

- import circles between modules (strongly connected components of more than one module),
- imports that point up a layer, and whether each is allowed (``ALLOWED_UP`` says why),
- imports of another family's private modules (``lowshot.<family>._x`` from elsewhere),
- functions over ``MAX_FUNCTION_LINES`` in the pipeline, api and cli layers,
- modules over ``MAX_MODULE_LINES`` lines.

``python tools/check_architecture.py`` prints the report and exits 1 when a rule is broken;
``--json`` prints it as JSON. ``tests/test_architecture.py`` runs it in the default suite.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "lowshot"
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 600
MAX_UP_IMPORTS = 2

# Ordered from the bottom up. A module belongs to the first prefix it matches (longest wins).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "core",
        (
            "lowshot._version",
            "lowshot.errors",
            "lowshot._log",
            "lowshot.io",
            "lowshot.params",
            "lowshot.progress",
            "lowshot._runtime",
            "lowshot._dist",
            "lowshot.registry",
            "lowshot.kernels",
        ),
    ),
    ("data", ("lowshot.data", "lowshot.domains")),
    ("backbones", ("lowshot.backbones", "lowshot.cache", "lowshot.evaluation")),
    ("training", ("lowshot.training", "lowshot.nets")),
    (
        "families",
        (
            "lowshot.model",
            "lowshot.feature",
            "lowshot.instance",
            "lowshot.fewshot",
            "lowshot.multitask",
            "lowshot.transferability",
            "lowshot.select",
            "lowshot.generalize",
        ),
    ),
    ("pipeline", ("lowshot.pipeline", "lowshot.catalogue", "lowshot.benchmark")),
    ("api", ("lowshot.api", "lowshot", "lowshot.demo")),
    ("cli", ("lowshot.cli",)),
]
LIMITED_LAYERS = ("pipeline", "api", "cli")  # where the function-length rule applies
FAMILIES = (
    "model",
    "feature",
    "instance",
    "fewshot",
    "multitask",
    "transferability",
    "select",
    "generalize",
)

# Up-imports that are allowed, with the reason. Key: (importer, imported).
ALLOWED_UP: dict[tuple[str, str], str] = {}


@dataclass
class Module:
    name: str
    path: Path
    lines: int
    where: str = ""
    imports: list[tuple[str, int, bool]] = field(
        default_factory=list
    )  # (target, line, in_function)
    functions: list[tuple[str, int, int]] = field(default_factory=list)  # (qualname, line, length)


def module_name(path: Path, src: Path = SRC) -> str:
    rel = path.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(mod: str) -> tuple[int, str]:
    best: tuple[int, int, str] | None = None  # (prefix length, index, layer name)
    for i, (name, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            matches = mod == p or mod.startswith(p + ".")
            if matches and (best is None or len(p) > best[0]):
                best = (len(p), i, name)
    if best is None:
        raise SystemExit(f"{mod}: in no layer; add it to LAYERS in {Path(__file__).name}")
    return best[1], best[2]


def _resolve(mod: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


class _Visitor(ast.NodeVisitor):
    def __init__(self, m: Module, known: set[str], is_pkg: bool) -> None:
        self.m, self.known, self.is_pkg = m, known, is_pkg
        self.depth = 0
        self.scope: list[str] = []

    def _target(self, name: str) -> str | None:
        # the longest known module that is ``name`` or a parent of it
        while name:
            if name in self.known:
                return name
            name = name.rpartition(".")[0]
        return None

    def _add(self, name: str, line: int) -> None:
        t = self._target(name)
        if t is not None and t != self.m.name:
            self.m.imports.append((t, line, self.depth > 0))

    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            if a.name.split(".")[0] == PACKAGE:
                self._add(a.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = _resolve(self.m.name, self.is_pkg, node)
        if base.split(".")[0] != PACKAGE:
            return
        for a in node.names:  # `from lowshot.x import y` may import the module lowshot.x.y
            full = f"{base}.{a.name}"
            self._add(full if full in self.known else base, node.lineno)

    def _func(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.scope.append(node.name)
        length = (node.end_lineno or node.lineno) - node.lineno + 1
        self.m.functions.append((".".join(self.scope), node.lineno, length))
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1
        self.scope.pop()

    visit_FunctionDef = _func
    visit_AsyncFunctionDef = _func

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    def visit_If(self, node: ast.If) -> None:
        # `if TYPE_CHECKING:` imports never run: they are annotations, not structure
        test = node.test
        if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
            for n in node.orelse:
                self.visit(n)
            return
        self.generic_visit(node)


def parse(src: Path = SRC) -> dict[str, Module]:
    paths = sorted((src / PACKAGE).rglob("*.py"))
    known = {module_name(p, src) for p in paths}
    mods: dict[str, Module] = {}
    for p in paths:
        text = p.read_text(encoding="utf-8")
        m = Module(
            module_name(p, src), p, text.count("\n") + 1, where=str(p.relative_to(src.parent))
        )
        _Visitor(m, known, p.name == "__init__.py").visit(ast.parse(text, str(p)))
        mods[m.name] = m
    return mods


def cycles(mods: dict[str, Module]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    graph = {n: sorted({t for t, _, _ in m.imports}) for n, m in mods.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = counter
                counter += 1
                stack.append(v)
                on.add(v)
            recurse = False
            for j in range(i, len(graph[v])):
                w = graph[v][j]
                if w not in index:
                    work.append((v, j + 1))
                    work.append((w, 0))
                    recurse = True
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            if recurse:
                continue
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
            if work:
                u = work[-1][0]
                low[u] = min(low[u], low[v])
    return out


def report(mods: dict[str, Module]) -> dict:
    up, private = [], []
    n_imports = n_inner = 0
    for m in mods.values():
        li, ln = layer_of(m.name)
        for t, line, inner in m.imports:
            n_imports += 1
            n_inner += inner
            ti, tn = layer_of(t)
            where = f"{m.where}:{line}"
            if ti > li:
                up.append(
                    {
                        "from": m.name,
                        "to": t,
                        "where": where,
                        "layers": f"{ln} -> {tn}",
                        "why": ALLOWED_UP.get((m.name, t)),
                    }
                )
            tparts = t.split(".")
            if (
                len(tparts) > 2
                and tparts[1] in FAMILIES
                and tparts[2].startswith("_")
                and not m.name.startswith(".".join(tparts[:2]))
            ):
                private.append({"from": m.name, "to": t, "where": where})
    long_functions = [
        {"function": f"{m.name}.{q}", "lines": n, "where": f"{m.where}:{line}"}
        for m in mods.values()
        if layer_of(m.name)[1] in LIMITED_LAYERS
        for q, line, n in m.functions
        if n > MAX_FUNCTION_LINES
    ]
    long_modules = [
        {"module": m.name, "lines": m.lines} for m in mods.values() if m.lines > MAX_MODULE_LINES
    ]
    circles = cycles(mods)
    unexplained_up = [u for u in up if not u["why"]]
    return {
        "modules": len(mods),
        "internal_imports": n_imports,
        "imports_inside_functions": n_inner,
        "circles": circles,
        "up_imports": up,
        "private_cross_family": private,
        "long_functions": long_functions,
        "long_modules": long_modules,
        "ok": not circles
        and not unexplained_up
        and len(up) <= MAX_UP_IMPORTS
        and not private
        and not long_functions
        and not long_modules,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    args = ap.parse_args(argv)
    r = report(parse())
    if args.json:
        print(json.dumps(r, indent=2))
        return 0 if r["ok"] else 1
    print(
        f"{r['modules']} modules, {r['internal_imports']} internal imports "
        f"({r['imports_inside_functions']} inside functions)"
    )
    print(f"import circles: {len(r['circles'])}")
    for c in r["circles"]:
        print(f"  {len(c)} modules: {', '.join(c)}")
    print(f"imports up a layer: {len(r['up_imports'])} (at most {MAX_UP_IMPORTS}, each explained)")
    for u in r["up_imports"]:
        print(
            f"  {u['where']}: {u['from']} -> {u['to']} ({u['layers']})"
            + (f": {u['why']}" if u["why"] else "")
        )
    print(f"imports of another family's private modules: {len(r['private_cross_family'])}")
    for u in r["private_cross_family"]:
        print(f"  {u['where']}: {u['from']} -> {u['to']}")
    print(
        f"functions over {MAX_FUNCTION_LINES} lines in {', '.join(LIMITED_LAYERS)}: "
        f"{len(r['long_functions'])}"
    )
    for f in r["long_functions"]:
        print(f"  {f['where']}: {f['function']} ({f['lines']} lines)")
    print(f"modules over {MAX_MODULE_LINES} lines: {len(r['long_modules'])}")
    for m in r["long_modules"]:
        print(f"  {m['module']} ({m['lines']} lines)")
    print("ok" if r["ok"] else "FAILED")
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
