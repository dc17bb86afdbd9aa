"""The bounded socket/API fuzzer (benchmarks/bench_fuzz.py) in CI: >= 10,000 malformed frames and requests
over the three sockets and every JSON endpoint of the example site on one gunicorn gevent worker, with a
live canary chat and call beside them. Every count must be 0: crashes (a fuzzed socket dying, an
``INTERNAL`` answer, a traceback in the server's log), 5xx, frames left unanswered, validation errors
without a field, canary drops. The benchmark run (>= 100,000 inputs) is in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import bench_fuzz

CI_INPUTS = 10_400


def test_fuzzing_the_sockets_and_apis_crashes_nothing_and_the_canary_keeps_going() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="lpcall-fuzz-"))
    server = bench_fuzz.start_site(workdir)
    try:
        result = bench_fuzz.run(f"http://127.0.0.1:{server.port}", CI_INPUTS, seed=1414,
                                log=next(workdir.glob("site-*.log")))
    finally:
        server.stop()
    counts = {k: result[k] for k in ("crashes", "5xx", "unanswered", "no_field", "canary_drops")}
    assert counts == dict.fromkeys(counts, 0), (counts, result["examples"])
    assert result["total"] >= 10_000, result["inputs"]
    assert all(n > 2_000 for n in result["inputs"].values()), result["inputs"]  # every target was fuzzed
    assert result["canary_messages"] > 0 and result["canary_frames"] > 0
    assert result["codes"].get("BAD_FRAME", 0) > 5_000  # the inputs were malformed
