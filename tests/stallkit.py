"""What the stall tests and benchmark share (issue 19): cutting the media path inside the private
network namespace with iptables (never the host's firewall), and in-page probes that count decoded
video frames and record what the call UI showed.

A cut is UDP only: the signaling socket (TCP) stays up, as on a real network where media breaks first.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

COMMENT = "lpcall-stall-test"

#: page init script part: every 20 ms the call's data-status and visible status text, when they change
STATUS_RECORDER_JS = """
window.__shown = [];
setInterval(() => {
  const root = document.querySelector('.lpcall-call');
  if (!root) return;
  const st = root.querySelector('.lpcall-call-status');
  const now = {status: root.dataset.status || '', text: st && !st.hidden ? st.textContent : '', t: performance.now()};
  const last = window.__shown.at(-1);
  if (!last || last.status !== now.status || last.text !== now.text) window.__shown.push(now);
}, 20);
"""

#: decoded video frames of the newest open peer connection (not <video>.currentTime: it moves on audio)
FRAMES_JS = """async () => {
  const pcs = (window.__lpcallPeers || []).filter(pc => pc.connectionState !== 'closed');
  const pc = pcs.at(-1);
  let n = 0;
  if (pc) (await pc.getStats()).forEach(r => { if (r.type === 'inbound-rtp' && r.kind === 'video') n += r.framesDecoded || 0; });
  return n;
}"""

#: the address of the local candidate of the selected pair on the newest open connection
SELECTED_LOCAL_JS = """async () => {
  const pcs = (window.__lpcallPeers || []).filter(pc => pc.connectionState !== 'closed');
  const pc = pcs.at(-1);
  if (!pc) return null;
  const stats = await pc.getStats();
  let out = null;
  stats.forEach(r => {
    if (r.type !== 'transport' || !r.selectedCandidatePairId) return;
    const pair = stats.get(r.selectedCandidatePairId);
    const local = pair && stats.get(pair.localCandidateId);
    const remote = pair && stats.get(pair.remoteCandidateId);
    if (local && remote) out = {local: local.address, remote: remote.address, protocol: local.protocol};
  });
  return out;
}"""

#: in-page: resolves with performance.now() when decoded frames moved ``n`` past their count at the call
FRAMES_ADVANCE_JS = """async ([n, timeoutMs]) => {
  const count = async () => { const pcs = (window.__lpcallPeers || []).filter(pc => pc.connectionState !== 'closed');
    let f = 0; if (pcs.length) (await pcs.at(-1).getStats()).forEach(r => { if (r.type === 'inbound-rtp' && r.kind === 'video') f += r.framesDecoded || 0; });
    return f; };
  const start = await count();
  const t0 = performance.now();
  while (performance.now() - t0 < timeoutMs) {
    if (await count() >= start + n) return performance.timeOrigin + performance.now();
    await new Promise(r => setTimeout(r, 10));
  }
  return null;
}"""


def in_private_netns() -> bool:
    return os.environ.get("LPCALL_IN_NETNS") == "1"


class Cut:
    """iptables rules (tagged with COMMENT) that drop UDP inside the namespace; ``restore()`` removes them."""

    def __init__(self) -> None:
        self.rules: list[list[str]] = []

    def _add(self, rule: list[str]) -> None:
        if not in_private_netns():
            raise RuntimeError("iptables only inside the private test namespace")
        subprocess.run(["iptables", "-I", *rule, "-m", "comment", "--comment", COMMENT, "-j", "DROP"], check=True)
        self.rules.append(rule)

    def all_udp(self) -> None:
        self._add(["INPUT", "-p", "udp"])

    def udp_to(self, address: str) -> None:
        """Every UDP datagram to ``address`` (both browsers share the namespace: both directions)."""
        self._add(["INPUT", "-p", "udp", "-d", address])

    def dropped(self) -> int:
        out = subprocess.run(["iptables", "-L", "INPUT", "-v", "-n", "-x"], capture_output=True, text=True, check=True)
        return sum(int(line.split()[0]) for line in out.stdout.splitlines() if COMMENT in line)

    def restore(self) -> None:
        while self.rules:
            rule = self.rules.pop()
            subprocess.run(["iptables", "-D", *rule, "-m", "comment", "--comment", COMMENT, "-j", "DROP"], check=True)


def shown(page: Any) -> list[dict[str, Any]]:
    return page.evaluate("window.__shown || []")  # type: ignore[no-any-return]
