"""A network shaper for the private test namespace (issue 17): round-trip time, random loss and a
bandwidth limit on the namespace's paths, as a context manager.

The kernel the tests run on has no ``netem`` (nor ``fq``) qdisc, so the usual ``tc qdisc ... netem
delay/loss`` is not available. What is used instead, all inside the namespace only:

* delay: an iptables ``NFQUEUE`` rule on OUTPUT hands every matching packet to a queue that this
  module reads over a raw netlink socket (``AF_NETLINK``/``NETLINK_NETFILTER``, nfnetlink_queue:
  bind, copy-meta mode); each packet is accepted (verdict ``NF_ACCEPT``) after the delay, in order.
  Every packet in the namespace crosses OUTPUT once (all its addresses are local, so everything
  goes over ``lo``): a one-way delay of RTT/2 on every packet gives every path the RTT.
* loss: ``iptables -m statistic --mode random --probability p -j DROP`` on INPUT (UDP only by
  default: the media; optionally only to one address/port, i.e. one side's incoming media).
* bandwidth: an ``htb`` qdisc on ``lo`` whose default class is unlimited and a limited class fed
  by a ``u32`` filter (the ``fw`` classifier is not in this kernel either) on the destination
  address/port, or all of ``lo`` when none is given.

Everything is tagged and removed on exit. Refuses to run outside the private namespace.

    with NetShape(rtt_ms=100):          # every path: +100 ms round trip
        ...
    with NetShape() as shape:
        shape.loss(0.15, to=("10.213.0.1", 53211))   # 15 % of one side's incoming media
        shape.rate(300, to=("10.213.0.1", 53211))    # kbit/s
        shape.clear_loss()
"""

from __future__ import annotations

import collections
import logging
import os
import select
import socket
import struct
import subprocess
import threading
import time
from typing import Any, Self

log = logging.getLogger(__name__)

COMMENT = "lpcall-netshape"
NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS = 1, 2
NFQA_PACKET_HDR, NFQA_VERDICT_HDR = 1, 2
NFQNL_CFG_CMD_BIND, NFQNL_CFG_CMD_UNBIND = 1, 2
NFQNL_COPY_META = 1
NLM_F_REQUEST = 1
NF_ACCEPT = 1
NLMSG_ERROR = 2


def in_private_netns() -> bool:
    return os.environ.get("LPCALL_IN_NETNS") == "1"


def _run(*args: str) -> None:
    if not in_private_netns():
        raise RuntimeError("the network shaper runs only inside the private test namespace")
    subprocess.run(list(args), check=True, capture_output=True)


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * ((4 - length % 4) % 4)


def _message(msg_type: int, queue: int, attrs: bytes, seq: int = 0) -> bytes:
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + attrs
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg_type, NLM_F_REQUEST, seq, 0) + body


class DelayQueue:
    """Reads one NFQUEUE over netlink and accepts each packet ``delay_ms`` after it arrived, in order."""

    def __init__(self, queue: int, delay_ms: float) -> None:
        self.queue = queue
        self.delay = delay_ms / 1000.0
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind((0, 0))
        self.pending: collections.deque[tuple[float, int]] = collections.deque()
        self.cond = threading.Condition()
        self.stopped = False
        self.packets = 0
        self._config(struct.pack("!BBH", NFQNL_CFG_CMD_BIND, 0, socket.AF_INET))
        self._config(None, params=struct.pack("!IB", 0xFFFF, NFQNL_COPY_META))
        self.threads = [threading.Thread(target=self._reader, daemon=True, name=f"nfq-read-{queue}"),
                        threading.Thread(target=self._releaser, daemon=True, name=f"nfq-release-{queue}")]
        for t in self.threads:
            t.start()

    def _config(self, cmd: bytes | None, params: bytes | None = None) -> None:
        attrs = _attr(NFQA_CFG_CMD, cmd) if cmd is not None else _attr(NFQA_CFG_PARAMS, params or b"")
        self.sock.send(_message(NFQNL_MSG_CONFIG, self.queue, attrs))

    def _reader(self) -> None:
        while not self.stopped:
            ready, _, _ = select.select([self.sock], [], [], 0.2)
            if not ready:
                continue
            try:
                data = self.sock.recv(1 << 16)
            except OSError:
                return
            now = time.monotonic()
            ids = list(self._packet_ids(data))
            if ids:
                with self.cond:
                    self.pending.extend((now + self.delay, i) for i in ids)
                    self.packets += len(ids)
                    self.cond.notify()

    @staticmethod
    def _packet_ids(data: bytes) -> Any:
        off = 0
        while off + 16 <= len(data):
            length, kind = struct.unpack_from("=IH", data, off)
            if length < 16:
                return
            if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                a = off + 20  # nlmsghdr (16) + nfgenmsg (4)
                while a + 4 <= off + length:
                    alen, atype = struct.unpack_from("=HH", data, a)
                    if alen < 4:
                        break
                    if atype & 0x7FFF == NFQA_PACKET_HDR:
                        yield struct.unpack_from("!I", data, a + 4)[0]
                        break
                    a += (alen + 3) & ~3
            elif kind == NLMSG_ERROR:
                err = struct.unpack_from("=i", data, off + 16)[0]
                if err:
                    log.warning("nfqueue: netlink error %d", err)
            off += (length + 3) & ~3

    def _releaser(self) -> None:
        while True:
            with self.cond:
                while not self.pending and not self.stopped:
                    self.cond.wait(0.2)
                if self.stopped and not self.pending:
                    return
                due, packet_id = self.pending[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self.cond.wait(wait)
                    continue
                self.pending.popleft()
            verdict = _attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, packet_id))
            try:
                self.sock.send(_message(NFQNL_MSG_VERDICT, self.queue, verdict))
            except OSError as exc:
                log.warning("nfqueue verdict failed: %s", exc)

    def close(self) -> None:
        """Stop reading; packets still held are released first (nothing is lost)."""
        with self.cond:
            self.stopped = True
            self.cond.notify()
        for t in self.threads:
            t.join(timeout=5)
        try:
            self._config(struct.pack("!BBH", NFQNL_CFG_CMD_UNBIND, 0, socket.AF_INET))
        except OSError:
            pass
        self.sock.close()


Target = tuple[str, int | None]


def _match(to: Target | None, proto: str | None) -> list[str]:
    out = ["-p", proto or "udp"] if proto or (to is not None and to[1] is not None) else []
    if to is not None:
        out += ["-d", to[0]]
        if to[1] is not None:
            out += ["--dport", str(to[1])]
    return out


class NetShape:
    """Delay (RTT), loss and a rate limit inside the private namespace; a context manager that undoes
    everything on exit. ``rtt_ms`` at construction adds that round trip to every path."""

    QUEUE = 17

    def __init__(self, rtt_ms: float = 0, loss: float = 0, rate_kbit: int | None = None) -> None:
        self._rules: list[tuple[str, str, list[str]]] = []  # (table, chain, rule without -j)
        self._delay: DelayQueue | None = None
        self._htb = False
        self._filters = 0
        self._init = (rtt_ms, loss, rate_kbit)

    def __enter__(self) -> Self:
        rtt_ms, loss, rate_kbit = self._init
        if rtt_ms:
            self.rtt(rtt_ms)
        if loss:
            self.loss(loss)
        if rate_kbit:
            self.rate(rate_kbit)
        return self

    def __exit__(self, *exc: object) -> None:
        self.clear()

    # -- delay
    def rtt(self, rtt_ms: float, proto: str | None = None) -> None:
        """Every packet (or only ``proto``) is held rtt/2 on its way out: each round trip costs ``rtt_ms``."""
        self.clear_rtt()
        self._delay = DelayQueue(self.QUEUE, rtt_ms / 2)
        rule = ["OUTPUT", *_match(None, proto)]
        _run("iptables", "-I", *rule, "-m", "comment", "--comment", COMMENT, "-j", "NFQUEUE",
             "--queue-num", str(self.QUEUE), "--queue-bypass")
        self._rules.append(("filter", "NFQUEUE", rule))

    def clear_rtt(self) -> None:
        self._drop_rules("NFQUEUE")
        if self._delay is not None:
            self._delay.close()
            self._delay = None

    # -- loss
    def loss(self, probability: float, to: Target | None = None, proto: str = "udp") -> None:
        """Drop ``probability`` of the incoming ``proto`` packets (to one address/port if given)."""
        rule = ["INPUT", *_match(to, proto), "-m", "statistic", "--mode", "random",
                "--probability", f"{probability:.4f}"]
        _run("iptables", "-I", *rule, "-m", "comment", "--comment", COMMENT, "-j", "DROP")
        self._rules.append(("filter", "DROP", rule))

    def clear_loss(self) -> None:
        self._drop_rules("DROP")

    def dropped(self) -> int:
        out = subprocess.run(["iptables", "-L", "INPUT", "-v", "-n", "-x"], capture_output=True, text=True, check=True)
        return sum(int(line.split()[0]) for line in out.stdout.splitlines() if COMMENT in line and "DROP" in line)

    # -- bandwidth
    def rate(self, kbit: int, to: Target | None = None) -> None:
        """Limit the packets to ``to`` (address, port or None) — or all of lo — to ``kbit`` kbit/s."""
        if not self._htb:
            _run("tc", "qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb", "default", "1", "r2q", "100000")
            _run("tc", "class", "add", "dev", "lo", "parent", "1:", "classid", "1:1", "htb", "rate", "40gbit")
            self._htb = True
        self._filters += 1
        cls = f"1:{10 + self._filters}"
        burst = max(1600, kbit * 1000 // 8 // 50)  # ~20 ms worth, at least one packet
        _run("tc", "class", "add", "dev", "lo", "parent", "1:", "classid", cls, "htb", "rate", f"{kbit}kbit",
             "ceil", f"{kbit}kbit", "burst", str(burst), "cburst", str(burst))
        _run("tc", "qdisc", "add", "dev", "lo", "parent", cls, "pfifo", "limit", "100")
        match = ["match", "u32", "0", "0"] if to is None else ["match", "ip", "dst", f"{to[0]}/32"]
        if to is not None and to[1] is not None:
            match += ["match", "ip", "dport", str(to[1]), "0xffff"]
        _run("tc", "filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", str(self._filters),
             "u32", *match, "flowid", cls)

    def clear_rate(self) -> None:
        if self._htb:
            subprocess.run(["tc", "qdisc", "del", "dev", "lo", "root"], check=False, capture_output=True)
            self._htb = False
            self._filters = 0

    # -- all
    def _drop_rules(self, target: str) -> None:
        keep = []
        for table, tgt, rule in reversed(self._rules):
            if tgt != target:
                keep.append((table, tgt, rule))
                continue
            extra = ["--queue-num", str(self.QUEUE), "--queue-bypass"] if tgt == "NFQUEUE" else []
            subprocess.run(["iptables", "-D", *rule, "-m", "comment", "--comment", COMMENT, "-j", tgt, *extra],
                           check=False, capture_output=True)
        self._rules = list(reversed(keep))

    def clear(self) -> None:
        self.clear_loss()
        self.clear_rtt()
        self.clear_rate()
