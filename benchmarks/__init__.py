"""Benchmarks: ``python -m benchmarks [name ...]`` runs every ``benchmarks/bench_*.py``.

A benchmark module has ``main()``. If it returns a string (a markdown section), the runner
writes it into ``benchmarks/RESULTS.md`` between ``<!-- bench:NAME -->`` and
``<!-- /bench:NAME -->`` inside the section of its issue (module constant ``ISSUE``);
a ``main()`` that returns None writes its own section. Figures are always measured against
a baseline in the same run; nothing here is a pass/fail threshold.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def write_section(name: str, markdown: str, issue: int | None = None, path: Path = RESULTS) -> None:
    """Put ``markdown`` between the markers of ``name`` (replacing what was there)."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{markdown.strip()}\n{end}"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    if start in text and end in text:
        text = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, text, count=1, flags=re.DOTALL)
    else:
        heading = re.search(rf"^## Issue {issue}\b.*$", text, flags=re.MULTILINE) if issue is not None else None
        if heading:
            nxt = text.find("\n## ", heading.end())
            at = nxt + 1 if nxt >= 0 else len(text)
            before = text[:at].rstrip("\n")
            before = re.sub(r"\n_No figures yet\._$", "", before)
            text = before + "\n\n" + block + "\n\n" + text[at:]
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text.rstrip("\n") + "\n", encoding="utf-8")
