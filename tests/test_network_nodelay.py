"""Issue 17: the server's end of a call signaling socket has TCP_NODELAY, so a frame written right
behind another (after an Accept: `session`, then the relayed answer) is not held for the ACK of the
first, one round trip on a real network (benchmarks/bench_rtt_setup.py shows the effect). The live
server runs in this process: its accepted socket is found among the process's sockets by the
client's address."""

from __future__ import annotations

import gc
import socket
from typing import Any

from callkit import BOB, cobrowse_payload, conversation, make_app, services
from test_signaling import Peer


def _server_end(client: socket.socket) -> socket.socket | None:
    mine = client.getsockname()
    for obj in gc.get_objects():
        if isinstance(obj, socket.socket) and obj is not client and obj.fileno() >= 0:
            try:
                if obj.type == socket.SOCK_STREAM and obj.getpeername() == mine:
                    return obj
            except OSError:
                continue
    return None


def test_call_sockets_send_without_nagle(live_server: Any) -> None:
    app = make_app(LPCALL_INVITE_TTL=60)
    server = live_server(app)
    calls, _ = services(app)
    setup = conversation(app)
    info = calls.invite(BOB, setup.conv_id, "VIDEO_CALL")
    calls.accept(setup.consumer_id, cobrowse_payload(info))
    agent = Peer(server.ws_url, info["token"])
    agent.next("joined")
    end = _server_end(agent.ws.socket)
    assert end is not None, "the server's end of the call socket"
    assert end.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    agent.close()
