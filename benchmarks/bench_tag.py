"""Eager tag size (gzip) and the cost of tag injection, beside the same site without the extension.

* size: the complete ``<script data-lpcall-tag>`` a page receives (config + the stub
  ``static/lptag-stub.js``), raw and gzip-compressed (level 6 as web servers use, and 9); target <= 3 KB
  gzip. Beside it, the bus the stub loads asynchronously (``static/lptag.js`` as served from its
  versioned URL: once per visitor and version, then from the browser's cache for a year).
* overhead: the example shop's home page (Jinja template, ~9 KB) served by otherwise identical apps,
  one with ``LPCall(app)`` (default config), one without (baseline) and one without the extension but
  with the same tag bytes spliced in, each on its own gunicorn (1 gthread worker) on 127.0.0.1, loaded
  by ``wrk`` (or a Python keep-alive client when wrk is missing). Rounds interleave the apps; the
  figure is the median of the per-round ratios of requests per server CPU-second; target <= 5 % slower.
  A second, in-process figure (Flask test client, no network) isolates the Python side.

    python -m benchmarks tag            # or: python -m benchmarks.bench_tag [--rounds 6 --seconds 3]
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from flask import Flask, abort, render_template

ROOT = Path(__file__).resolve().parent.parent
ISSUE = 2
PAGE = "/"


VARIANTS = ("plain", "bytes", "tagged")


def bench_app(variant: str = "plain") -> Flask:
    """The example shop's pages (gunicorn: ``bench_app('tagged')``).

    ``plain``: no extension (the baseline); ``tagged``: ``LPCall(app)`` with default config;
    ``bytes``: no extension, but a bare hook splices the same tag bytes before ``</head>``, which
    separates the cost of a bigger page from the cost of the extension's own logic.
    """
    from example_site.app import PRODUCTS

    site = ROOT / "example_site"
    app = Flask("bench_shop", template_folder=str(site / "templates"), static_folder=str(site / "static"))
    app.config["SECRET_KEY"] = "bench"
    if variant == "tagged":
        from flask_lpcall import LPCall

        LPCall(app)
    elif variant == "bytes":
        tag = _tag_bytes()

        @app.after_request
        def splice(response: Any) -> Any:
            body = response.get_data()
            at = body.find(b"</head>")
            response.set_data(body[:at] + tag + body[at:])
            return response

    @app.get("/")
    def home() -> str:
        return render_template("home.html", products=PRODUCTS)

    @app.get("/products/<slug>")
    def product(slug: str) -> str:
        if slug not in PRODUCTS:
            abort(404)
        return render_template("product.html", slug=slug, product=PRODUCTS[slug])

    @app.get("/support")
    def support() -> str:
        return render_template("support.html")

    return app


def _tag_bytes() -> bytes:
    body = bench_app("tagged").test_client().get(PAGE).get_data(as_text=True)
    (tag,) = re.findall(r"<script data-lpcall-tag.*?</script>", body, flags=re.DOTALL)
    return tag.encode()


# -- size -------------------------------------------------------------------------------------------
def tag_size() -> dict[str, Any]:
    client = bench_app("tagged").test_client()
    body = client.get(PAGE).get_data(as_text=True)
    plain = bench_app("plain").test_client().get(PAGE).get_data(as_text=True)
    raw = _tag_bytes()
    (bus_url,) = re.findall(r'"(/static/lptag\.js\?v=[0-9a-f]+)"', raw.decode())
    bus_resp = client.get("/lpcall" + bus_url)
    bus = bus_resp.get_data()
    return {
        "bus_url": "/lpcall" + bus_url,
        "bus_cache": bus_resp.headers.get("Cache-Control", ""),
        "bus_raw": len(bus),
        "bus_gzip6": len(gzip.compress(bus, 6)),
        "raw": len(raw),
        "gzip6": len(gzip.compress(raw, 6)),
        "gzip9": len(gzip.compress(raw, 9)),
        "page_plain_gzip": len(gzip.compress(plain.encode(), 6)),
        "page_tagged_gzip": len(gzip.compress(body.encode(), 6)),
    }


# -- overhead over HTTP ---------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, variant: str) -> None:
        self.port = _free_port()
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", "1", "-k", "gthread", "--threads", "4", "--keep-alive", "30",
             "-b", f"127.0.0.1:{self.port}", "--log-level", "warning", f"benchmarks.bench_tag:bench_app({variant!r})"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", PAGE)
                resp = conn.getresponse()
                body = resp.read()
                conn.close()
                assert resp.status == 200
                assert (b"data-lpcall-tag" in body) is (variant != "plain")
                return
            except (ConnectionError, OSError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                    raise RuntimeError(f"gunicorn did not start: {err}") from None
                time.sleep(0.1)  # start-up poll

    def cpu_seconds(self, user_only: bool = False) -> float:
        """user+system (or user) CPU time of the gunicorn master and its worker(s) so far."""
        total = 0.0
        pids = [self.proc.pid]
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            pids += [int(c) for c in children]
        except OSError:
            pass
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + (0 if user_only else int(fields[12]))) / os.sysconf("SC_CLK_TCK")
        return total

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _wrk(port: int, seconds: float, connections: int) -> tuple[float, int]:
    out = subprocess.run(
        ["wrk", "-t", "1", "-c", str(connections), "-d", f"{max(1, round(seconds))}s", f"http://127.0.0.1:{port}{PAGE}"],
        capture_output=True, text=True, check=True,
    ).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    n = re.search(r"(\d+) requests in", out)
    if not m or not n or "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk run failed:\n{out}")
    return float(m.group(1)), int(n.group(1))


def _python_client(port: int, seconds: float, connections: int) -> tuple[float, int]:
    counts = [0] * connections
    stop = time.monotonic() + seconds

    def worker(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while time.monotonic() < stop:
            conn.request("GET", PAGE)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise RuntimeError(f"status {resp.status}")
            counts[i] += 1
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - t0), sum(counts)


def http_overhead(rounds: int, seconds: float, connections: int) -> dict[str, Any]:
    load = _wrk if shutil.which("wrk") else _python_client
    servers = {name: Server(name) for name in VARIANTS}
    rps: dict[str, list[float]] = {name: [] for name in VARIANTS}
    per_round_cpu: dict[str, list[float]] = {name: [] for name in VARIANTS}  # requests per CPU-second
    per_round_user: dict[str, list[float]] = {name: [] for name in VARIANTS}  # ... per user CPU-second
    cpu = dict.fromkeys(VARIANTS, 0.0)
    done = dict.fromkeys(VARIANTS, 0)
    try:
        for s in servers.values():  # warm-up: imports, template cache, first-request setup
            load(s.port, 1.0, connections)
        for r in range(rounds):
            order = VARIANTS[r % 3:] + VARIANTS[:r % 3]
            for name in order if r % 2 == 0 else order[::-1]:
                c0, u0 = servers[name].cpu_seconds(), servers[name].cpu_seconds(user_only=True)
                rate, count = load(servers[name].port, seconds, connections)
                used = servers[name].cpu_seconds() - c0
                user = servers[name].cpu_seconds(user_only=True) - u0
                per_round_user[name].append(count / user if user > 0 else math.nan)
                cpu[name] += used
                done[name] += count
                rps[name].append(rate)
                per_round_cpu[name].append(count / used if used > 0 else math.nan)
    finally:
        for s in servers.values():
            s.stop()

    def paired(series: dict[str, list[float]], name: str) -> list[float]:
        # each round measures every app back to back: ratios within a round cancel the machine's drifts
        return [x / p for p, x in zip(series["plain"], series[name]) if not (math.isnan(p) or math.isnan(x))]

    out: dict[str, Any] = {
        "client": "wrk" if load is _wrk else "python keep-alive client",
        "requests": done, "rounds": rounds, "seconds": seconds, "connections": connections,
    }
    for name in VARIANTS:
        out[name] = {
            "rps": statistics.median(rps[name]),
            "cpu_rate": done[name] / cpu[name],
            "cpu_paired": paired(per_round_cpu, name),
            "wall_paired": paired(rps, name),
            "user_paired": paired(per_round_user, name),
        }
    return out


# -- in-process hook cost ----------------------------------------------------------------------------------
def in_process(n: int, rounds: int) -> dict[str, Any]:
    clients = {name: bench_app(name).test_client() for name in VARIANTS}
    for c in clients.values():
        for _ in range(50):
            c.get(PAGE)
    per: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for r in range(rounds):
        for name in VARIANTS if r % 2 == 0 else VARIANTS[::-1]:
            c = clients[name]
            t0 = time.process_time()  # CPU time: other processes on the machine do not count
            for _ in range(n):
                c.get(PAGE)
            per[name].append((time.process_time() - t0) / n * 1e6)
    # noise on a shared machine only adds time: the best round is the least disturbed estimate
    return {name: {"best_us": min(v), "median_us": statistics.median(v)} for name, v in per.items()}


def _pct(ratio: float) -> str:
    return f"{(1 - ratio) * 100:.1f} % slower" if ratio <= 1 else f"{(ratio - 1) * 100:.1f} % faster"


def render(size: dict[str, Any], http: dict[str, Any], local: dict[str, Any]) -> str:
    cpu_name = platform.processor() or platform.machine()
    tagged = statistics.median(http["tagged"]["cpu_paired"])
    extra = statistics.median(http["bytes"]["cpu_paired"])
    wall = statistics.median(http["tagged"]["wall_paired"])
    q1, _, q3 = statistics.quantiles(http["tagged"]["cpu_paired"], n=4)
    ok = "✅" if tagged >= 0.95 else "❌"
    lp, lb, lt = (local[n]["best_us"] for n in VARIANTS)
    rows = "\n".join(
        f"| {label} | {http[n]['cpu_rate']:.0f} | {http[n]['rps']:.0f} | "
        f"{statistics.median(http[n]['cpu_paired']):.3f} | {statistics.median(http[n]['user_paired']):.3f} | "
        f"{statistics.median(http[n]['wall_paired']):.3f} |"
        for n, label in (("plain", "same site without the extension (baseline)"),
                         ("bytes", "baseline + the same tag bytes spliced by a bare hook"),
                         ("tagged", "with `LPCall(app)`, tag injected"))
    )
    return f"""Measured {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())} on {os.cpu_count()} cores shared with five other engineers'
test runs ({cpu_name}, load average {os.getloadavg()[0]:.0f}), Python {platform.python_version()}; `python -m benchmarks tag`.

**Eager tag per page** (`<script data-lpcall-tag>`: `window.lpCallConfig` + the stub `static/lptag-stub.js`,
everything a page carries; the stub queues `lpTag.events` calls and loads the bus asynchronously):

| | bytes | target |
|---|---|---|
| raw | {size['raw']} | |
| gzip -6 (typical server) | {size['gzip6']} | ≤ 3072 {'✅' if size['gzip6'] <= 3072 else '❌'} |
| gzip -9 | {size['gzip9']} | |
| home page, gzip -6, without → with the tag | {size['page_plain_gzip']} → {size['page_tagged_gzip']} | |
| the bus the stub loads (`static/lptag.js`, async, not per page), raw / gzip -6 | {size['bus_raw']} / {size['bus_gzip6']} | |

The bus comes from `{size['bus_url']}` (`v` = its content hash), served with `Cache-Control: {size['bus_cache']}`:
a visitor fetches it once per version, every later page takes it from the browser's cache.

**Injection overhead over HTTP**: the example shop's home page (9 KB of HTML) from three apps, each
on its own gunicorn (1 gthread worker) on 127.0.0.1, {http['client']}, {http['connections']} connections,
{http['rounds']} rounds of {http['seconds']:g} s per app, the apps' order rotating every round.

| app | requests per server CPU-second | requests/s (median) | CPU ratio to baseline (median of rounds) | user-CPU ratio | wall-clock ratio |
|---|---|---|---|---|---|
{rows}

**Result: with the extension, {tagged:.3f} of the baseline's requests per CPU-second, {_pct(tagged)}
(target ≤ 5 % {ok}).** The middle half of the rounds lies between {q1:.2f} and {q3:.2f}: on this busy shared
machine one run does not resolve a 5 % target; compare several runs. Requests per CPU-second of the server process (user + system time from `/proc`) is
the capacity figure; every round measures the apps back to back and the table gives the median of the
per-round ratios (tagged: {', '.join(f'{r:.2f}' for r in http['tagged']['cpu_paired'])}). The wall-clock
ratio ({wall:.3f}) moves with whatever else the shared machine runs. The "tag bytes" row ({extra:.3f})
is the part of the cost that comes from the page being {size['raw']} bytes bigger, not from the extension's code.
On loopback the sender's kernel time also pays for the receiving side of TCP, so the byte cost counts
double here; the user-CPU column (Python only: {statistics.median(http['tagged']['user_paired']):.3f} with the
extension, {statistics.median(http['bytes']['user_paired']):.3f} with the bare bytes) leaves the kernel out.

In-process (Flask test client, CPU time, best of {local['rounds']} rounds of 200 requests, no network):
{lp:.0f} µs → {lb:.0f} µs with the bytes → {lt:.0f} µs with the extension per request (medians
{local['plain']['median_us']:.0f} / {local['bytes']['median_us']:.0f} / {local['tagged']['median_us']:.0f} µs).
"""


def main() -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    size = tag_size()
    local = in_process(200, 30)
    local["rounds"] = 30
    http = http_overhead(args.rounds, args.seconds, args.connections)
    return render(size, http, local)


if __name__ == "__main__":
    from benchmarks import write_section

    text = main()
    write_section("tag", text, ISSUE)
    print(text)
