"""Every package flask_lpcall imports is installed by ``pip install flask-lpcall`` or by a documented
extra whose absence gives a message naming it (issue 13 point 1)."""

from __future__ import annotations

import ast
import configparser
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

from support import parse_python

from flask_lpcall.optional import INSTALL_HINTS

ROOT = Path(__file__).resolve().parent.parent
#: imports that only an optional part makes, through flask_lpcall.optional.require, and the extra that brings them
OPTIONAL = {"flask_login": "login", "hiredis": "serve"}  # hiredis: the Redis bus's C parser, with a fallback


def _requirements() -> tuple[set[str], dict[str, set[str]]]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")

    def names(text: str) -> set[str]:
        return {re.split(r"[<>=!~\[; ]", line.strip())[0].lower().replace("_", "-")
                for line in text.splitlines() if line.strip() and not line.strip().startswith("#")}

    extras = {name: names(value) for name, value in cfg["options.extras_require"].items()}
    return names(cfg["options"]["install_requires"]), extras


def _third_party_imports() -> dict[str, set[str]]:
    """top-level module -> the flask_lpcall files importing it (static, every import statement)."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "flask_lpcall").rglob("*.py"):
        for node in ast.walk(parse_python(path.read_text())):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            for mod in mods:
                top = mod.split(".")[0]
                if top not in sys.stdlib_module_names and top != "flask_lpcall" and top != "__future__":
                    found.setdefault(top, set()).add(path.name)
    for path in (ROOT / "flask_lpcall").rglob("*.py"):  # require("pkg.module", …)
        for match in re.finditer(r'require\("([A-Za-z0-9_]+)', path.read_text()):
            found.setdefault(match.group(1), set()).add(path.name)
    return found


def _closure(names: set[str]) -> set[str]:
    """``names`` and everything they require (without extras), as installed here."""
    from importlib.metadata import PackageNotFoundError, requires

    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            reqs = requires(name) or []
        except PackageNotFoundError:
            continue
        for req in reqs:
            if "extra ==" not in req:
                todo.append(re.split(r"[<>=!~\[; (]", req.strip())[0].lower().replace("_", "-"))
    return seen


def test_every_import_is_an_install_requirement_or_a_documented_extra() -> None:
    direct, extras = _requirements()
    required = _closure(direct)  # Flask brings werkzeug and click, aiortc brings av …
    dists = packages_distributions()
    missing = {}
    for module, files in _third_party_imports().items():
        names = {d.lower().replace("_", "-") for d in dists.get(module, [module])}
        if names & required:
            continue
        extra = OPTIONAL.get(module)
        if extra and names & extras.get(extra, set()):
            assert module in INSTALL_HINTS and f"flask-lpcall[{extra}]" in INSTALL_HINTS[module][1], module
            continue
        missing[module] = sorted(files)
    assert not missing, f"imported by flask_lpcall but not installed by `pip install flask-lpcall`: {missing}"


def test_the_peer_and_the_demo_agent_need_nothing_from_the_test_extra() -> None:
    required, _ = _requirements()
    assert {"websockets", "aiortc", "numpy"} <= required
