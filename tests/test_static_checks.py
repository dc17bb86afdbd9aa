"""ruff (with the complexity rule, C901 <= 12) and mypy --strict run with the suite, so CI runs them
(pyproject.toml holds both configurations). A failure prints what the tool said."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          check=False)


def test_ruff_is_clean_including_complexity() -> None:
    out = _run("ruff", "check", "flask_lpcall", "tests", "example_site", "benchmarks")
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_strict_is_clean_on_the_package() -> None:
    out = _run("mypy", "--strict", "flask_lpcall")
    assert out.returncode == 0, out.stdout + out.stderr
