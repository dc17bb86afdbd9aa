"""Run the benchmarks: ``python -m benchmarks`` (all) or ``python -m benchmarks tag relay`` (some);
options after ``--`` go to each of them (``python -m benchmarks stall -- --cuts 10``).

Each ``benchmarks/bench_<name>.py`` runs in its own process, one after the other (they load the
machine; running them together would falsify each other's figures).
"""

from __future__ import annotations

import subprocess
import sys
import time

from . import ROOT

RUN_ONE = """
import importlib, sys
from benchmarks import write_section
name = sys.argv[1]
module = importlib.import_module("benchmarks.bench_" + name)
sys.argv = [module.__file__, *sys.argv[2:]]
out = module.main()
if isinstance(out, str):
    write_section(name, out, getattr(module, "ISSUE", None))
    print(out)
"""


def main(argv: list[str]) -> int:
    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1:]
    available = sorted(p.stem[len("bench_"):] for p in (ROOT / "benchmarks").glob("bench_*.py"))
    chosen = argv or available
    unknown = [n for n in chosen if n not in available]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; available: {available}", file=sys.stderr)
        return 2
    failed = []
    for name in chosen:
        print(f"== bench_{name}", flush=True)
        t0 = time.monotonic()
        rc = subprocess.call([sys.executable, "-c", RUN_ONE, name, *extra], cwd=ROOT)
        print(f"== bench_{name}: exit {rc} after {time.monotonic() - t0:.0f} s", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
