"""Issue 15: one socket layer. The consumer, agent and call sockets share one transport; only its
simple-websocket adapter knows that library's (and wsproto's) internals, and the package has one
``Sock`` whose route makes the one Origin check.

These read the package's source: a second socket layer, a new reach into simple-websocket's
attributes or a second ``Sock()`` would pass every wire test until the two drift apart again.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from support import parse_python

PACKAGE = Path(__file__).resolve().parent.parent / "flask_lpcall"
ADAPTER = PACKAGE / "sockets" / "adapter.py"
#: attributes of simple_websocket.Server that are not its public send/receive/close API
INTERNALS = re.compile(r"\b(?:ws|server|_server)\.(?:sock|ws|connected|mode|event|input_buffer|thread|pong_received|"
                       r"ping_interval|close_reason|close_message)\b")


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(parse_python(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_adapter_imports_simple_websocket_or_wsproto() -> None:
    users = [p.relative_to(PACKAGE).as_posix() for p in _modules() if _imported(p) & {"simple_websocket", "wsproto"}]
    assert users == ["sockets/adapter.py"], users


def test_no_module_but_the_adapter_reads_simple_websocket_internals() -> None:
    found = []
    for path in _modules():
        if path == ADAPTER:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if INTERNALS.search(line.split("#")[0]):
                found.append(f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)


def test_one_sock_for_every_socket_route() -> None:
    made = []
    for path in _modules():
        for node in ast.walk(parse_python(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Sock":
                made.append(path.relative_to(PACKAGE).as_posix())
    assert made == ["sockets/route.py"], made


def test_no_socket_handler_checks_the_origin_itself() -> None:
    """The route refuses a foreign Origin for all three sockets (PROTOCOL §1); a handler's own check
    would be a second rule that can drift from it."""
    checkers = [p.relative_to(PACKAGE).as_posix() for p in _modules()
                if "origin_allowed(" in p.read_text(encoding="utf-8")]
    assert sorted(checkers) == ["sockets/route.py", "sockets/transport.py"], checkers
