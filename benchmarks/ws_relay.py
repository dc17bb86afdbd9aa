"""The ceiling: a raw asyncio ``websockets`` relay (no framework, no validation, JSON in and out).

``python benchmarks/ws_relay.py PORT`` — clients connect to ``/?pair=<n>&role=agent|consumer``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve

peers: dict[tuple[str, str], ServerConnection] = {}


async def handler(ws: ServerConnection) -> None:
    query = parse_qs(urlsplit(ws.request.path).query)  # type: ignore[union-attr]
    pair, role = query["pair"][0], query["role"][0]
    other = "consumer" if role == "agent" else "agent"
    peers[(pair, role)] = ws
    try:
        async for raw in ws:
            frame: dict[str, Any] = json.loads(raw)
            peer = peers.get((pair, other))
            if peer is not None:
                await peer.send(json.dumps({**frame, "from": role}, separators=(",", ":")))
    finally:
        peers.pop((pair, role), None)


async def main(port: int) -> None:
    async with serve(handler, "127.0.0.1", port, max_queue=64, compression=None):
        print("ready", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
