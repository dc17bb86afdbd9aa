"""The pre-call network check's numbers and verdicts (pure). The check itself: an aiortc peer on the
server (``peer/responder.py``), its HTTP API and page (``web/netcheck.py``), PROTOCOL §9."""

from __future__ import annotations

from typing import Any

from ..errors import LPCallError
from ..texts import render

#: Documented needs of a call, kbit/s (both directions).
NEEDS_KBPS: dict[str, int] = {"video": 2600, "degraded": 1100, "voice": 600}
#: Verdicts, best first.
VERDICTS = ("video", "degraded", "voice", "insufficient", "no_path")
#: RTT above which the verdict text warns about lag, ms.
HIGH_RTT_MS = 300
#: Each bitrate probe stops at this rate: enough to prove any call fits, cheap on the server.
PROBE_CAP_KBPS = 8000
#: Duration of each bitrate probe (upload, download), ms.
PROBE_MS = 1500
#: How long the browser waits for the data channel to open before "no direct path", ms.
CONNECT_TIMEOUT_MS = 8000
#: Checks running at once per process; more get 503 BUSY.
MAX_CONCURRENT = 4
#: A check's server peer is closed after this many seconds at the latest.
CHECK_LIFETIME = 40.0
#: bytes of one binary chunk of a bitrate probe
CHUNK = 16 * 1024


class BusyError(LPCallError):
    """Too many network checks are running in this process."""

    code = "BUSY"


def verdict(connected: bool, bitrate_kbps: float | None) -> str:
    """One of :data:`VERDICTS` for a path (or none) and the bitrate it reached."""
    if not connected:
        return "no_path"
    rate = bitrate_kbps or 0.0
    for name in ("video", "degraded", "voice"):
        if rate >= NEEDS_KBPS[name]:
            return name
    return "insufficient"


def describe(texts: dict[str, str], result: dict[str, Any]) -> str:
    """The plain-language verdict for ``result`` (keys ``verdict`` and ``rttMs``)."""
    message = render(texts, f"netcheck.verdict.{result['verdict']}")
    rtt = result.get("rttMs")
    if result["verdict"] != "no_path" and rtt is not None and rtt > HIGH_RTT_MS:
        message += " " + render(texts, "netcheck.high_latency", rtt=round(rtt))
    return message
