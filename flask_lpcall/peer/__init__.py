"""The aiortc participant: a Python agent or consumer (``participant``), its media, its asyncio loop
and the demo agent. ``from flask_lpcall.peer import Peer`` is the public entry point (README: "Python
peer and demo agent"). Nothing in ``web/`` or ``sockets/`` imports this package at start-up: aiortc
costs each worker about 37 MB, so the network check loads it with its first check."""

from .participant import (
    CallClosedError,
    CandidateInfo,
    ConnectError,
    Peer,
    PeerError,
    PeerStats,
    PeerTimeoutError,
    ProtocolError,
    SignalingError,
)

__all__ = [
    "CallClosedError",
    "CandidateInfo",
    "ConnectError",
    "Peer",
    "PeerError",
    "PeerStats",
    "PeerTimeoutError",
    "ProtocolError",
    "SignalingError",
]
