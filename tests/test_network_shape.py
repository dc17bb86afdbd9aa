"""The network shaper of issue 17 (tests/netshape.py): RTT, loss and a rate limit inside the private
namespace, and all of it gone again on exit. UDP between the namespace's two veth addresses."""

from __future__ import annotations

import os
import socket
import statistics
import threading
import time
from collections.abc import Iterator

import pytest
from netshape import NetShape, in_private_netns

pytestmark = pytest.mark.skipif(not in_private_netns() and os.environ.get("CI") != "true",
                                reason="needs the private network namespace")

SERVER = ("10.213.0.2", 40017)  # bound with SO_REUSEADDR per test


class Client(socket.socket):
    arrivals: list[float]


@pytest.fixture()
def echo() -> Iterator[Client]:
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.settimeout(0.2)
    srv.bind(SERVER)
    done = threading.Event()
    arrivals: list[float] = []

    def serve() -> None:
        while not done.is_set():
            try:
                data, addr = srv.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            arrivals.append(time.monotonic())
            if data.startswith(b"ping"):
                srv.sendto(data, addr)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    cli = Client(socket.AF_INET, socket.SOCK_DGRAM)
    cli.bind(("10.213.0.1", 0))
    cli.settimeout(0.4)
    cli.arrivals = arrivals
    yield cli
    done.set()
    thread.join(2)
    cli.close()
    srv.close()


def _rtts(cli: socket.socket, n: int) -> tuple[list[float], int]:
    out, lost = [], 0
    for i in range(n):
        t = time.monotonic()
        cli.sendto(b"ping%d" % i, SERVER)
        try:
            while cli.recvfrom(4096)[0] != b"ping%d" % i:
                pass
            out.append((time.monotonic() - t) * 1000)
        except TimeoutError:
            lost += 1
    return out, lost


def test_rtt_is_added_and_removed(echo: Client) -> None:
    base, _ = _rtts(echo, 5)
    with NetShape(rtt_ms=120):
        shaped, lost = _rtts(echo, 8)
    after, _ = _rtts(echo, 5)
    assert lost == 0
    assert statistics.median(shaped) >= 120
    assert statistics.median(shaped) > statistics.median(base) + 100
    assert statistics.median(after) < 100


def test_loss_drops_only_the_chosen_destination(echo: Client) -> None:
    with NetShape() as shape:
        shape.loss(0.5, to=SERVER)
        _, lost = _rtts(echo, 30)
        dropped = shape.dropped()
    assert lost >= 3 and dropped >= lost
    _, lost_after = _rtts(echo, 10)
    assert lost_after == 0


def test_rate_limit_paces_the_chosen_destination(echo: Client) -> None:
    arrivals = echo.arrivals
    with NetShape() as shape:
        shape.rate(300, to=SERVER)
        arrivals.clear()
        for _ in range(40):  # 40 kB: ~1.1 s at 300 kbit/s, instant without the limit
            echo.sendto(b"x" * 1000, SERVER)
        deadline = time.monotonic() + 10
        while len(arrivals) < 40 and time.monotonic() < deadline:
            time.sleep(0.05)  # polling interval of a deadline wait
        assert len(arrivals) == 40
        kbit = 39 * 1028 * 8 / (arrivals[-1] - arrivals[0]) / 1000
    assert 200 < kbit < 400
