"""Back-to-back calls in Chromium (issue 19): how many never connect, how many negotiation errors.

The stress run of tests/test_negotiation_browser.py at full size: ``--calls`` (default 200) VIDEO_CALLs in a
row in one conversation (example shop on werkzeug in-process, memory store, the real agent workspace and
engagement window in one headless Chromium with fake devices, a private network namespace), mixing from a
seeded generator the Accept at once or after the kept offer, an agent or visitor reload at a random moment,
and the hang-up from either side. The same run with perfect negotiation switched off (the engine's
test-only switch: no tags, no collision handling) is the baseline: what the product prevents.

    python benchmarks/bench_negotiation.py [--calls 200] [--baseline-calls 60] [--no-baseline] [--no-write]
    python -m benchmarks negotiation
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from benchmarks.common import enter_netns

ISSUE = 19
NAME = "negotiation"


def run(calls: int, no_pn: bool) -> Any:
    from negotiationkit import StressRig, stress
    from playwright.sync_api import sync_playwright
    from support import launch_chromium, start_live_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    servers: list[Any] = []

    def live_server(app: Any) -> Any:
        servers.append(start_live_server(app))
        return servers[-1]

    try:
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            rig = StressRig(browser, live_server, no_pn=no_pn)
            result = stress(rig, calls)
            rig.close()
            browser.close()
    finally:
        for s in servers:
            s.stop()
    return result


def render(results: dict[str, Any], calls: int, load: float) -> str:
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = []
    for label, key in (("flask-lpcall (perfect negotiation, tagged offers)", "on"), ("baseline: perfect negotiation switched off", "off")):
        r = results.get(key)
        if r is None:
            continue
        rows.append(f"| {label} | {r.calls} | {len(r.never_connected)} | {len(r.wedges)} | {r.stale_dropped} | {r.seconds:.0f} s |")
    mix = results["on"].kinds
    table = "\n".join(rows)
    return f"""Measured {when} on {os.cpu_count()} shared cores ({platform.machine()}, load average {load:.1f}
while measuring), Chromium headless with fake devices, private network namespace;
`python benchmarks/bench_negotiation.py` (back-to-back VIDEO_CALLs, the number in each row, seed 19, one browser;
the same seeded mix in both rows, the baseline's shorter).

| | calls | never connected | "wrong state" / failed signaling steps in the consoles | stale frames dropped | time |
|---|---|---|---|---|---|
{table}

Mix (Accept + event + hang-up): {", ".join(f"{k} {v}" for k, v in sorted(mix.items()))}.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--baseline-calls", type=int, default=60, help="calls of the baseline row (it is slow: its failures wait out timeouts)")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    args, _ = parser.parse_known_args()
    enter_netns(__file__)
    load0 = os.getloadavg()[0]
    results = {"on": run(args.calls, no_pn=False)}
    print(f"on: {len(results['on'].never_connected)} never connected, {len(results['on'].wedges)} wedges", flush=True)
    if not args.no_baseline:
        results["off"] = run(args.baseline_calls, no_pn=True)
        print(f"off: {len(results['off'].never_connected)} never connected, {len(results['off'].wedges)} wedges", flush=True)
    load = (load0 + os.getloadavg()[0]) / 2
    text = render(results, args.calls, load)
    print(text)
    for r in results.values():
        for line in r.never_connected[:3]:
            print(line[:2000])
    if not args.no_write:
        from benchmarks import write_section

        write_section(NAME, text, ISSUE)


if __name__ == "__main__":
    main()
