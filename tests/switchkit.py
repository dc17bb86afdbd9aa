"""A visitor's network switch inside the private test namespace (issue 17), shared by
tests/test_network_switch.py and benchmarks/bench_netswitch.py.

What a phone does when it moves from Wi-Fi to cellular, made with the namespace's own tools:

* ``addr``: the address the call's media uses goes away and a new one appears (``ip addr``), so the
  browser's old sockets can no longer send and its network list changes;
* ``cut``: the selected candidate pair's addresses stop carrying UDP (iptables) while other paths
  still work;
* in both, the visitor's TCP connections to the site die at the same moment (``ss -K``: the kernel
  aborts them, as a vanished interface does), so its signaling and chat sockets are lost and must
  come back by themselves.

The visitor's pages are served from a second port of the same app (``SwitchRig``), so the visitor's
TCP connections can be told apart from the agent's.
"""

from __future__ import annotations

import subprocess
from typing import Any

from resumekit import Rig
from stallkit import COMMENT, Cut, in_private_netns
from support import start_live_server

#: addresses the switch moves between, per veth end: the first is the namespace's own (NETNS_SETUP)
SWAPS = {
    "10.213.0.1": ("lpcall0", "10.213.0.1/30", "10.213.0.9/32"),
    "10.213.0.9": ("lpcall0", "10.213.0.9/32", "10.213.0.1/30"),
    "10.213.0.2": ("lpcall1", "10.213.0.2/30", "10.213.0.10/32"),
    "10.213.0.10": ("lpcall1", "10.213.0.10/32", "10.213.0.2/30"),
}

#: the selected pair's local and remote address on the newest open connection of a page
SELECTED_PAIR_JS = """async () => {
  const pcs = (window.__lpcallPeers || []).filter(pc => pc.connectionState !== 'closed');
  const pc = pcs.at(-1); if (!pc) return null;
  const stats = await pc.getStats(); let out = null;
  stats.forEach(r => { if (r.type !== 'transport' || !r.selectedCandidatePairId) return;
    const p = stats.get(r.selectedCandidatePairId); const l = p && stats.get(p.localCandidateId), m = p && stats.get(p.remoteCandidateId);
    if (l && m) out = {local: l.address, remote: m.address, protocol: l.protocol}; });
  return out;
}"""

#: every page: the visitor's sockets' closes and opens, epoch ms (to see the signaling loss and return)
SOCKETS_JS = """
window.__sockets = [];
(() => { const WS = window.WebSocket;
  window.WebSocket = class extends WS { constructor(...a) { super(...a); const path = new URL(String(a[0]), location.href).pathname;
    this.addEventListener('open', () => window.__sockets.push({ev: 'open', path, t: Date.now()}));
    this.addEventListener('close', (e) => window.__sockets.push({ev: 'close', path, code: e.code, t: Date.now()})); } };
})();
"""


def _ip(*args: str) -> None:
    if not in_private_netns():
        raise RuntimeError("ip only inside the private test namespace")
    subprocess.run(["ip", *args], check=True)


def present(address: str) -> bool:
    """``address`` is on one of the namespace's links now."""
    out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, check=True).stdout
    return f" {address}/" in out


def keep_default_route() -> None:
    """A default route that does not depend on an address (the switch removes addresses)."""
    _ip("route", "replace", "default", "dev", "lpcall0")


class SwitchRig(Rig):
    """The example site on two ports of one app: the agent on the first, the visitor on the second."""

    def __init__(self, browser: Any, live_server: Any, **config: Any) -> None:
        super().__init__(browser, live_server, **config)
        self.visitor_server = start_live_server(self.app)

    def open_consumer(self, path: str = "/") -> Any:
        agent_server, self.server = self.server, self.visitor_server
        try:
            return super().open_consumer(path)
        finally:
            self.server = agent_server

    @property
    def visitor_port(self) -> int:
        return int(self.visitor_server.url.rsplit(":", 1)[1])

    def close(self) -> None:
        super().close()
        self.visitor_server.stop()


class Switch:
    """Moves the visitor's network; ``undo()`` puts the namespace back as NETNS_SETUP made it."""

    def __init__(self) -> None:
        self.cut = Cut()
        self.moved: list[tuple[str, str, str]] = []  # (device, removed, added)

    def no_loopback_media(self) -> None:
        """Media only over the veth addresses (a phone has no loopback path to the agent): UDP on
        127.0.0.0/8 is dropped until ``undo()``, so every switch moves an address that can move."""
        self.cut.udp_to("127.0.0.0/8")

    def kill_tcp(self, port: int) -> None:
        """Abort every TCP connection to or from ``port`` (the visitor's server port)."""
        if not in_private_netns():
            raise RuntimeError("ss -K only inside the private test namespace")
        subprocess.run(["ss", "-K", "dport", "=", f":{port}"], check=True, capture_output=True)
        subprocess.run(["ss", "-K", "sport", "=", f":{port}"], check=True, capture_output=True)

    def replace_address(self, address: str) -> str:
        """``address`` goes away, its swap partner appears; returns the new address."""
        dev, old, new = SWAPS[address]
        _ip("addr", "del", old, "dev", dev)
        _ip("addr", "add", new, "dev", dev)
        self.moved.append((dev, old, new))
        return new.split("/")[0]

    def switch(self, kind: str, pair: dict[str, Any], visitor_port: int) -> list[list[str]]:
        """The switch itself: the media path goes (``kind``), and the visitor's TCP connections die.
        Returns the iptables rules a ``cut`` added (``restore_rules`` lifts them: the old path back)."""
        rules: list[list[str]] = []
        if kind == "addr":
            self.replace_address(pair["local"])
        else:
            rules = self.cut_pair(pair)
        self.kill_tcp(visitor_port)
        return rules

    def cut_pair(self, pair: dict[str, Any]) -> list[list[str]]:
        """UDP to the pair's addresses dropped; returns the rules (``restore_rules`` lifts them)."""
        before = len(self.cut.rules)
        for a in dict.fromkeys((pair["local"], pair["remote"])):
            self.cut.udp_to(a)
        return self.cut.rules[before:]

    def restore_rules(self, rules: list[list[str]]) -> None:
        for rule in rules:
            self.cut.rules.remove(rule)
            subprocess.run(["iptables", "-D", *rule, "-m", "comment", "--comment", COMMENT, "-j", "DROP"], check=True)

    def undo(self) -> None:
        self.cut.restore()
        while self.moved:
            dev, old, new = self.moved.pop()
            _ip("addr", "del", new, "dev", dev)
            _ip("addr", "add", old, "dev", dev)
