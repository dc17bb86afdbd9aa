"""The house plan (issue 15): folders are layers and every import points down.

web -> sockets -> core -> protocol/store; peer (the aiortc participant) beside them. No import cycle,
no import inside a function but aiortc's two, no Flask in core/, and no function over 60 lines.
Read from the source with ``ast``; ``TYPE_CHECKING`` imports (types only) are not arrows.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

from support import parse_python

from flask_lpcall.protocol import browser_module

PACKAGE = Path(__file__).resolve().parent.parent / "flask_lpcall"
MAX_PY_LINES = 60

#: layer -> the layers (and top-level modules) it may import at run time
ALLOWED: dict[str, set[str]] = {
    "protocol": set(),
    "errors": {"protocol"},
    "texts": {"errors"},
    "config": {"errors", "texts"},
    "optional": set(),
    "signals": set(),
    "store": {"errors", "protocol", "store"},
    "core": {"core", "store", "protocol", "errors", "texts", "signals", "config"},
    "sockets": {"sockets", "core", "store", "protocol", "errors", "state"},
    "peer": {"peer", "core", "store", "protocol", "errors", "texts", "optional", "config"},
    "web": {"web", "sockets", "core", "store", "protocol", "errors", "texts", "state", "config", "optional"},
}
#: the imports allowed inside a function: aiortc costs a worker ~37 MB, loaded when first needed
LAZY = {("cli", "peer.demo"), ("web.netcheck", "peer.responder")}
#: optional packages, imported where they are needed (none today)
OPTIONAL_EXTRAS: set[str] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    base = module.split(".") if is_package else module.split(".")[:-1]
    if node.level:
        base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
        target = ".".join([*base, node.module] if node.module else base)
    elif node.module and node.module.startswith("flask_lpcall"):
        target = node.module.removeprefix("flask_lpcall").lstrip(".")
    else:
        return []
    names = [f"{target}.{a.name}".lstrip(".") for a in node.names]
    return [n for n in names if _exists(n)] or [target]


def _exists(name: str) -> bool:
    path = PACKAGE.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


@cache
def _imports() -> dict[str, tuple[set[str], set[str]]]:
    """module -> (run-time imports at module level, imports inside functions)."""
    out: dict[str, tuple[set[str], set[str]]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        tree = parse_python(path.read_text(encoding="utf-8"))
        top: set[str] = set()
        inner: set[str] = set()

        def visit(node: ast.AST, in_function: bool, bucket_top: set[str] = top, bucket_inner: set[str] = inner,
                  module: str = name, pkg: bool = path.name == "__init__.py") -> None:
            if isinstance(node, ast.If) and _type_checking(node):
                return
            if isinstance(node, ast.ImportFrom):
                (bucket_inner if in_function else bucket_top).update(_resolve(module, pkg, node))
            inside = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            for child in ast.iter_child_nodes(node):
                visit(child, inside)

        visit(tree, False)
        out[name] = ({m for m in top if m and m != name}, inner)
    return out


def _layer(module: str) -> str:
    return module.split(".")[0]


def test_every_arrow_points_down_the_layers() -> None:
    wrong = []
    for module, (top, _) in _imports().items():
        layer = _layer(module)
        if layer not in ALLOWED:  # the wiring at the top (extension, state, cli, the package) may import anything
            continue
        for target in top:
            if _layer(target) != layer and _layer(target) not in ALLOWED[layer]:
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports against the layers: " + ", ".join(sorted(wrong))


def test_no_import_cycle() -> None:
    graph = {m: {t for t in top if t in _imports()} for m, (top, _) in _imports().items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def walk(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt):], nxt])
            elif nxt not in state:
                walk(nxt, [*stack, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_import_inside_a_function_but_aiortc_on_demand() -> None:
    found = {(module, target) for module, (_, inner) in _imports().items() for target in inner}
    assert found <= LAZY, sorted(found - LAZY)
    third_party = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for func in ast.walk(parse_python(path.read_text(encoding="utf-8"))):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(func):
                if isinstance(node, ast.Import) or (isinstance(node, ast.ImportFrom) and not node.level):
                    names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                    third_party += [f"{path.name}:{func.name} {n}" for n in names
                                    if n.split(".")[0] not in OPTIONAL_EXTRAS]
    assert not third_party, third_party


def test_core_and_store_know_nothing_of_flask() -> None:
    """(werkzeug.security, the directory's password hashing, is no web code.)"""
    flaskish = []
    for path in [*PACKAGE.joinpath("core").rglob("*.py"), *PACKAGE.joinpath("store").rglob("*.py"),
                 PACKAGE / "protocol.py"]:
        for node in ast.walk(parse_python(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            flaskish += [f"{path.name}: {n}" for n in names
                         if n.split(".")[0] in {"flask", "flask_sock", "werkzeug"} and n != "werkzeug.security"]
    assert not flaskish, flaskish


def python_functions_over(limit: int) -> list[str]:
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(parse_python(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > limit:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({length} lines)")
    return long


def test_no_python_function_over_60_lines() -> None:
    assert not python_functions_over(MAX_PY_LINES)


def test_the_browser_reads_the_protocols_words_from_the_generated_module() -> None:
    generated = PACKAGE.parent / "static" / "lpcall" / "protocol.js"
    assert generated.read_text(encoding="utf-8") == browser_module(), "run ./dev.sh protocol"
