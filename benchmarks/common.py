"""What the browser benchmarks share: the private network namespace, deadline waits, percentiles,
and the in-page JavaScript that times the first decoded video frame (calls and the loopback floor)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

#: The private namespace of the tests and benchmarks: loopback (plus 127.0.0.2, which aiortc needs: it
#: skips 127.0.0.1) and a veth pair whose two ends both stay inside, with a default route over it.
#: Firefox gathers no ICE candidate at all without a default route; nothing is routed out (the
#: namespace has no other link, and forwarding is off).
NETNS_SETUP = [
    "ip link set lo up",
    "ip addr add 127.0.0.2/32 dev lo",
    "ip link add lpcall0 type veth peer name lpcall1",
    "ip addr add 10.213.0.1/30 dev lpcall0",
    "ip addr add 10.213.0.2/30 dev lpcall1",
    "ip link set lpcall0 up",
    "ip link set lpcall1 up",
    "ip route add default via 10.213.0.2 dev lpcall0",
]
NETNS_LINKS = {"lo", "lpcall0", "lpcall1"}


def netns_script() -> str:
    """The shell line that sets the namespace up, then runs its arguments."""
    return " && ".join([*NETNS_SETUP, 'exec "$@"'])


def enter_netns(script: str) -> None:
    """Re-execute ``script`` (with this process's arguments) in a private network namespace like
    the tests (``NETNS_SETUP``). Does nothing when already inside one, when ``LPCALL_NO_NETNS`` is
    set, or when namespaces are not available."""
    if os.environ.get("LPCALL_IN_NETNS") or os.environ.get("LPCALL_NO_NETNS") or not shutil.which("unshare"):
        return
    if subprocess.run(["unshare", "-n", "true"], check=False, capture_output=True).returncode != 0:
        return
    os.environ["LPCALL_IN_NETNS"] = "1"
    os.execvp("unshare", ["unshare", "-n", "sh", "-c", netns_script(), "sh", sys.executable, script, *sys.argv[1:]])


def wait(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``cond`` until it returns something truthy; TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)  # polling interval of a deadline wait


def percentile(values: Sequence[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


#: page init script part: window.__ff[i] = when peer connection i (window.__lpcallPeers, test mode)
#: first decoded a video frame, epoch ms, polled every 10 ms
FIRST_FRAME_POLLER_JS = """
window.__lpcallTest = true;
window.__ff = [];
setInterval(async () => {
  const peers = window.__lpcallPeers || [];
  for (let i = 0; i < peers.length; i++) {
    if (window.__ff[i] !== undefined || peers[i].connectionState === 'closed') continue;
    let n = 0;
    (await peers[i].getStats()).forEach((r) => { if (r.type === 'inbound-rtp' && r.kind === 'video') n += r.framesDecoded || 0; });
    if (n > 0 && window.__ff[i] === undefined) window.__ff[i] = performance.timeOrigin + performance.now();
  }
}, 10);
"""


def floor_js(since_navigation: bool = False) -> str:
    """The floor: getUserMedia and two RTCPeerConnections in the page, offer/answer and candidates
    handed over directly, both sending; ms until both decoded a frame (same 10 ms polling), counted
    from the call of this function or, ``since_navigation``, from the page's navigation start."""
    t0 = "performance.timeOrigin" if since_navigation else "now()"
    return """
async () => {
  const now = () => performance.timeOrigin + performance.now();
  const t0 = @T0@;
  const stream = await navigator.mediaDevices.getUserMedia({audio: true, video: true});
  const a = new RTCPeerConnection(), b = new RTCPeerConnection();
  a.onicecandidate = (e) => e.candidate && b.addIceCandidate(e.candidate);
  b.onicecandidate = (e) => e.candidate && a.addIceCandidate(e.candidate);
  for (const t of stream.getTracks()) { a.addTrack(t, stream); b.addTrack(t.clone(), stream); }
  await a.setLocalDescription(); await b.setRemoteDescription(a.localDescription);
  await b.setLocalDescription(); await a.setRemoteDescription(b.localDescription);
  const frames = async (pc) => { let n = 0; (await pc.getStats()).forEach((r) => {
    if (r.type === 'inbound-rtp' && r.kind === 'video') n += r.framesDecoded || 0; }); return n; };
  const first = [null, null];
  while ((first[0] === null || first[1] === null) && now() - t0 < 30000) {
    if (first[0] === null && await frames(a) > 0) first[0] = now();
    if (first[1] === null && await frames(b) > 0) first[1] = now();
    await new Promise((r) => setTimeout(r, 10));
  }
  a.close(); b.close(); stream.getTracks().forEach((t) => t.stop());
  if (first[0] === null || first[1] === null) throw new Error('floor: no frame');
  return Math.max(first[0], first[1]) - t0;
}
""".replace("@T0@", t0)


#: What Chromium offers in its WebSocket handshake (every browser offers permessage-deflate).
CHROMIUM_EXTENSIONS_OFFER = "permessage-deflate; client_max_window_bits"


def chromium_ws_options() -> dict[str, Any]:
    """``websockets`` ``connect()`` keyword arguments that negotiate exactly as Chromium does: the offer
    ``permessage-deflate; client_max_window_bits`` (no ``server_max_window_bits``, no ``no_context_takeover``;
    websockets' own default offer asks for 12-bit windows, which a browser never does) and, if the
    server accepts, zlib's defaults (15-bit window, memLevel 8) as Chromium uses."""
    from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

    factory = ClientPerMessageDeflateFactory(client_max_window_bits=True, compress_settings={"memLevel": 8})
    return {"compression": None, "extensions": [factory]}


def negotiated(ws: Any) -> str:
    """The extensions a websockets connection ended up with ("none" when the server declined)."""
    names = [getattr(e, "name", type(e).__name__) for e in ws.protocol.extensions]
    return ", ".join(names) or "none"
