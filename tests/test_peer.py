"""The aiortc participant (flask_lpcall.peer) over the real signaling server.

* aiortc ↔ aiortc: media both ways, stats, selected pair, ICE restart, hang-up.
* bad input: a wrong token, an unreachable server, and a (real, scripted) WebSocket
  server that sends malformed frames or nothing at all: every case ends in a typed
  PeerError with a ``code`` within its deadline, never a hang.
* Chromium ↔ aiortc, both role assignments, through the real browser call engine
  (``static/lpcall/engine.js``): frames decoded on both sides, and Chromium sees the
  colour bars of the test pattern.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from callkit import BOB, cobrowse_payload, conversation, make_app, services
from support import INBOUND_STATS_JS, free_port, wait_for

from flask_lpcall.peer import (
    CallClosedError,
    Peer,
    PeerTimeoutError,
    ProtocolError,
    SignalingError,
)
from flask_lpcall.peer.aioloop import BackgroundLoop
from flask_lpcall.peer.media import BARS

SMALL = (320, 240)


@pytest.fixture(scope="module")
def aio() -> Iterator[BackgroundLoop]:
    loop = BackgroundLoop("test-peer")
    yield loop
    loop.stop()


def _call(app: Any, mode: str = "VIDEO_CALL") -> tuple[dict[str, Any], dict[str, Any], Any]:
    """Invite + accept: (agent join info, consumer join info, setup)."""
    setup = conversation(app)
    calls, _ = services(app)
    agent = calls.invite(BOB, setup.conv_id, mode)
    consumer = calls.accept(setup.consumer_id, cobrowse_payload(agent))
    return agent, consumer, setup


def _ws(server: Any) -> str:
    return f"{server.ws_url}/lpcall/ws/call"


# -- aiortc ↔ aiortc ----------------------------------------------------------------------
def test_two_python_peers_exchange_media_restart_ice_and_hang_up(live_server, aio) -> None:
    app = make_app()
    server = live_server(app)
    agent_info, consumer_info, _ = _call(app)

    async def scenario() -> dict[str, Any]:
        async with Peer(_ws(server), agent_info["token"], video_size=SMALL) as agent, Peer(
            _ws(server), consumer_info["token"], video_size=SMALL
        ) as consumer:
            joined_agent = await agent.join()
            joined_consumer = await consumer.join()
            await asyncio.gather(agent.wait_connected(), consumer.wait_connected())
            a = await agent.wait_media(video_frames=5, audio_frames=5)
            c = await consumer.wait_media(video_frames=5, audio_frames=5)
            before = c.selected_pair
            await consumer.restart_ice(timeout=20)
            c2 = await consumer.wait_media(video_frames=c.video_frames + 5, timeout=20)
            a2 = await agent.wait_media(video_frames=agent.video_frames + 5, timeout=20)
            await agent.send_state(muted=True, camera_off=False)
            await consumer._wait(lambda: consumer.peer_state == {"muted": True, "cameraOff": False}, 5, "state")
            await agent.hangup()
            closed = await consumer.wait_closed()
            return {"ja": joined_agent, "jc": joined_consumer, "a": a, "c": c, "before": before, "c2": c2, "a2": a2,
                    "closed": closed}

    r = aio.run(scenario(), timeout=90)
    assert r["ja"]["role"] == "agent" and r["ja"]["polite"] is False
    assert r["jc"]["role"] == "consumer" and r["jc"]["polite"] is True and r["jc"]["peerPresent"] is True
    for stats in (r["a"], r["c"]):
        assert stats.video_frames >= 5 and stats.audio_frames >= 5
        assert stats.bytes_received > 0 and stats.bytes_sent > 0
        assert stats.connection_state == "connected"
        local, remote = stats.selected_pair
        assert (local.type, remote.type) == ("host", "host")
        assert local.address.startswith("127.") and local.protocol == "udp"
    # the restart really made a new path (new ICE credentials, new ports) and media flows again
    assert r["c2"].ice_restarts == 1
    assert r["c2"].selected_pair != r["before"]
    assert r["c2"].video_frames >= r["c"].video_frames + 5
    assert r["closed"]["reason"] == "hangup_agent" and r["closed"]["by"] == "agent"


def test_voice_call_negotiates_audio_only(live_server, aio) -> None:
    app = make_app()
    server = live_server(app)
    agent_info, consumer_info, _ = _call(app, "VOICE_CALL")

    async def scenario() -> tuple[Any, Any]:
        async with Peer(_ws(server), agent_info["token"]) as agent, Peer(_ws(server), consumer_info["token"]) as consumer:
            await agent.join()
            await consumer.join()
            c = await consumer.wait_media(video_frames=0, audio_frames=10)
            return c, [t.kind for t in consumer._pc.getTransceivers()]

    stats, kinds = aio.run(scenario(), timeout=60)
    assert stats.audio_frames >= 10 and stats.video_frames == 0
    assert kinds == ["audio"]


def _write_clip(path: Any, seconds: int = 2) -> None:
    """A small media file: the colour bars (MPEG-4 video) and a tone (PCM audio)."""
    import av
    import numpy as np

    from flask_lpcall.peer.media import pattern_image

    out = av.open(str(path), "w")
    video = out.add_stream("mpeg4", rate=15)
    video.width, video.height, video.pix_fmt = 320, 240, "yuv420p"
    audio = out.add_stream("pcm_s16le", rate=48000)
    audio.layout = "mono"
    img = pattern_image(320, 240)
    for i in range(15 * seconds):
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = i
        for packet in video.encode(frame):
            out.mux(packet)
    for i in range(50 * seconds):
        data = (np.sin((np.arange(960) + i * 960) / 48000 * 2 * np.pi * 440) * 3000).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(data, format="s16", layout="mono")
        frame.sample_rate, frame.pts = 48000, i * 960
        for packet in audio.encode(frame):
            out.mux(packet)
    for stream in (video, audio):
        for packet in stream.encode():
            out.mux(packet)
    out.close()


def test_peer_sends_a_media_file(live_server, aio, tmp_path) -> None:
    clip = tmp_path / "clip.mkv"
    _write_clip(clip)
    app = make_app()
    server = live_server(app)
    agent_info, consumer_info, _ = _call(app)

    async def scenario() -> tuple[Any, Any]:
        async with Peer.from_file(_ws(server), agent_info["token"], str(clip)) as agent, Peer(
            _ws(server), consumer_info["token"], video_size=SMALL
        ) as consumer:
            await agent.join()
            await consumer.join()
            stats = await consumer.wait_media(video_frames=10, audio_frames=10, timeout=45)
            return stats, consumer.last_video_frame.to_ndarray(format="rgb24")

    stats, picture = aio.run(scenario(), timeout=90)
    assert stats.video_frames >= 10 and stats.audio_frames >= 10
    h, w, _ = picture.shape
    samples = [picture[int(h * 0.3), int((i + 0.5) * w / 8)].tolist() for i in range(8)]
    assert bars_match(samples), samples


# -- bad input: typed errors, never a hang -------------------------------------------------
def test_wrong_token_is_a_signaling_error_with_the_servers_code(live_server, aio) -> None:
    server = live_server(make_app())

    async def scenario() -> None:
        async with Peer(_ws(server), "not-a-token") as peer:
            await peer.join(timeout=5)

    with pytest.raises(SignalingError) as info:
        aio.run(scenario(), timeout=20)
    assert info.value.code == "TOKEN_INVALID"


def test_unreachable_server_fails_fast(aio) -> None:
    async def scenario() -> None:
        async with Peer(f"ws://127.0.0.1:{free_port()}/lpcall/ws/call", "t") as peer:
            await peer.join(timeout=3)

    with pytest.raises(SignalingError) as info:
        aio.run(scenario(), timeout=20)
    assert info.value.code == "SIGNALING_UNREACHABLE"


GOOD_JOINED = {
    "type": "joined", "serviceId": "c#1", "role": "consumer", "mode": "VIDEO_CALL", "polite": True,
    "peerPresent": False, "peerState": None, "iceServers": [], "iceTransportPolicy": "all", "sessionState": "ACCEPTED",
}


async def _scripted_server(frames: list[Any]) -> tuple[Any, int]:
    """A real WebSocket server that sends ``frames`` (raw strings or JSON) and then stays silent."""
    from websockets.asyncio.server import serve

    async def handler(ws: Any) -> None:
        for frame in frames:
            await ws.send(frame if isinstance(frame, str) else json.dumps(frame))
        await ws.wait_closed()

    server = await serve(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.parametrize(
    ("frames", "error", "code", "field"),
    [
        (["{not json"], ProtocolError, "BAD_SERVER_FRAME", "(frame)"),
        ([{"type": "joined", "role": "consumer"}], ProtocolError, "BAD_SERVER_FRAME", "serviceId"),
        ([{**GOOD_JOINED, "mode": "SCREEN_SHARE"}], ProtocolError, "BAD_SERVER_FRAME", "mode"),
        ([{**GOOD_JOINED, "iceTransportPolicy": "none"}], ProtocolError, "BAD_SERVER_FRAME", "iceTransportPolicy"),
        ([{"type": 7}], ProtocolError, "BAD_SERVER_FRAME", "type"),
        ([{"type": "session", "sessionState": "RINGING"}], ProtocolError, "BAD_SERVER_FRAME", "sessionState"),
        ([[1, 2]], ProtocolError, "BAD_SERVER_FRAME", "(frame)"),
        ([], PeerTimeoutError, "TIMEOUT", None),
    ],
)
def test_bad_or_missing_server_frames_fail_with_a_code(aio, frames, error, code, field) -> None:
    async def scenario() -> None:
        server, port = await _scripted_server(frames)
        try:
            async with Peer(f"ws://127.0.0.1:{port}/lpcall/ws/call", "t", ping_interval=0) as peer:
                await peer.join(timeout=2)
        finally:
            server.close()

    with pytest.raises(error) as info:
        aio.run(scenario(), timeout=20)
    assert info.value.code == code
    assert info.value.field == field


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "description", "description": {"type": "offer"}},  # no "from"
        {"type": "description", "description": {"type": "nope", "sdp": ""}, "from": "agent"},
        {"type": "candidate", "candidate": {"sdpMid": "0"}, "from": "agent"},
        {"type": "closed"},
    ],
)
def test_a_bad_frame_after_joining_fails_every_waiter(aio, bad) -> None:
    async def scenario() -> None:
        server, port = await _scripted_server([GOOD_JOINED, bad])
        try:
            async with Peer(f"ws://127.0.0.1:{port}/lpcall/ws/call", "t", ping_interval=0) as peer:
                await peer.join(timeout=5)
                await peer.wait_connected(timeout=5)
        finally:
            server.close()

    with pytest.raises(ProtocolError) as info:
        aio.run(scenario(), timeout=20)
    assert info.value.code == "BAD_SERVER_FRAME" and info.value.field


def test_unknown_frame_types_are_skipped_and_recorded(aio) -> None:
    async def scenario() -> tuple[dict[str, Any], list[dict[str, Any]], str | None]:
        server, port = await _scripted_server(
            [{"type": "from-the-future"}, GOOD_JOINED, {"type": "session", "sessionState": "ACCEPTED"}]
        )
        try:
            async with Peer(f"ws://127.0.0.1:{port}/x", "t", ping_interval=0) as peer:
                joined = await peer.join(timeout=5)
                await peer._wait(lambda: peer.session_state == "ACCEPTED", 5, "session")
                return joined, peer.errors, peer.session_state
        finally:
            server.close()

    joined, errors, state = aio.run(scenario(), timeout=20)
    assert joined["serviceId"] == "c#1" and state == "ACCEPTED"
    assert errors == [{"code": "UNKNOWN_FRAME", "type": "from-the-future"}]


def test_socket_closing_mid_wait_is_call_closed(aio) -> None:
    from websockets.asyncio.server import serve

    async def scenario() -> None:
        async def handler(ws: Any) -> None:
            await ws.send(json.dumps(GOOD_JOINED))
            await ws.close(1011, "gone")

        server = await serve(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with Peer(f"ws://127.0.0.1:{port}/x", "t", ping_interval=0) as peer:
                await peer.join(timeout=5)
                await peer.wait_connected(timeout=10)
        finally:
            server.close()

    with pytest.raises(CallClosedError) as info:
        aio.run(scenario(), timeout=20)
    assert info.value.code == "CALL_CLOSED"


# -- Chromium ↔ aiortc (the real browser call engine) --------------------------------------
START_ENGINE_JS = """
async ({info, base}) => {
  const {CallEngine} = await import(`${base}/static/lpcall/engine.js`);
  const engine = new CallEngine({...info, base});
  engine.addEventListener('remotestream', (e) => {
    let v = document.getElementById('remote');
    if (!v) {
      v = document.createElement('video');
      v.id = 'remote'; v.muted = true; v.autoplay = true; v.playsInline = true;
      document.body.append(v);
    }
    v.srcObject = e.detail.stream;
    v.play().catch(() => {});
  });
  window.__engine = engine;
  await engine.start();
  return engine.status;
}
"""

# Samples the remote video's colour bars: [[r,g,b] at the middle of each bar, upper half].
SAMPLE_BARS_JS = """
(selector) => {
  const v = document.querySelector(selector || '#remote');
  if (!v || v.videoWidth === 0) return null;
  const c = document.createElement('canvas');
  c.width = v.videoWidth; c.height = v.videoHeight;
  const ctx = c.getContext('2d');
  ctx.drawImage(v, 0, 0);
  const out = [];
  for (let i = 0; i < 8; i++) {
    const x = Math.floor((i + 0.5) * c.width / 8), y = Math.floor(c.height * 0.3);
    out.push(Array.from(ctx.getImageData(x, y, 1, 1).data.slice(0, 3)));
  }
  return out;
}
"""


def bars_match(samples: list[list[int]] | None, tolerance: int = 48) -> bool:
    """Every sampled bar is close to the test pattern's colour at that position."""
    if not samples:
        return False
    return all(all(abs(a - b) <= tolerance for a, b in zip(got, want)) for got, want in zip(samples, BARS))


def _engine_page(browser: Any, server: Any) -> Any:
    page = browser.new_page()
    page.add_init_script("window.__lpcallTest = true;")
    page.goto(server.url + "/lpcall/netcheck")
    return page


@pytest.mark.parametrize("python_role", ["consumer", "agent"])
def test_chromium_and_python_peer_decode_each_others_frames(browser, live_server, aio, python_role) -> None:
    app = make_app()
    server = live_server(app)
    agent_info, consumer_info, _ = _call(app)
    browser_info = consumer_info if python_role == "agent" else agent_info
    python_info = agent_info if python_role == "agent" else consumer_info

    page = _engine_page(browser, server)
    assert page.evaluate(START_ENGINE_JS, {"info": browser_info, "base": "/lpcall"}) in ("connecting", "connected")
    peer = Peer(_ws(server), python_info["token"], video_size=SMALL)
    try:
        joined = aio.run(peer.join(), timeout=15)
        assert joined["role"] == python_role and joined["peerPresent"] is True
        stats = aio.run(peer.wait_media(video_frames=10, audio_frames=10, timeout=60), timeout=70)
        assert stats.video_frames >= 10 and stats.audio_frames >= 10
        assert stats.selected_pair is not None
        inbound = wait_for(
            lambda: (s := page.evaluate(INBOUND_STATS_JS)) and s["framesDecoded"] > 10 and s["audioBytes"] > 0 and s,
            timeout=30,
            message="Chromium decodes the Python peer's video and receives its audio",
        )
        assert inbound["videoTracks"] >= 1, inbound
        local, remote = stats.selected_pair
        # a host pair on the private namespace's own addresses: loopback (aiortc skips 127.0.0.1) or its veth
        inside = ("127.", "10.213.0.")
        assert local.type == "host" and local.address != "127.0.0.1" and local.address.startswith(inside), local
        assert remote.address.startswith(inside), remote
        samples = wait_for(lambda: (s := page.evaluate(SAMPLE_BARS_JS, '#remote')) and bars_match(s) and s, timeout=20,
                           message="Chromium shows the test pattern's colour bars")
        assert len(samples) == 8
        assert page.evaluate("window.__engine.status") == "connected"

        # ICE restart from the Python side: Chromium takes the new credentials (and DTLS
        # fingerprint) on its existing connection, and media flows again both ways
        aio.run(peer.restart_ice(timeout=30), timeout=40)
        before = peer.video_frames
        aio.run(peer.wait_media(video_frames=before + 10, timeout=60), timeout=70)
        decoded = inbound["framesDecoded"]
        wait_for(lambda: page.evaluate(INBOUND_STATS_JS)["framesDecoded"] > decoded + 10, timeout=30,
                 message="Chromium decodes again after the restart")
        # On its existing connection: Chromium is the DTLS server in both roles (python_role
        # "agent": aiortc's offers claim the client role, peer._claim_dtls_client), so it takes the new
        # fingerprint of aiortc's fresh connection. As the DTLS client it did not (its connection stayed
        # `connecting` and only the stall watch's fresh connection brought media back: a second one).
        assert page.evaluate("window.__lpcallPeers.length") == 1, "\n".join(
            x for x in page.evaluate("window.__engine.trace") if "candidate" not in x)
        assert page.evaluate("window.__engine.status") == "connected"

        # ICE restart from Chromium (restartIce: a new offer with fresh ICE credentials): the
        # Python peer answers from a fresh connection and media flows again
        old_pc = peer._pc
        page.evaluate("window.__engine.pc.restartIce()")
        aio.run(peer._wait(lambda: peer._pc is not old_pc and peer.connection_state == "connected", 60,
                           "the answer to the browser's restart"), timeout=70)
        aio.run(peer.wait_media(video_frames=peer.video_frames + 10, timeout=60), timeout=70)
        decoded = page.evaluate(INBOUND_STATS_JS)["framesDecoded"]
        wait_for(lambda: page.evaluate(INBOUND_STATS_JS)["framesDecoded"] > decoded + 10, timeout=30,
                 message="Chromium decodes after its own restart")
    finally:
        aio.run(peer.close(), timeout=15)
        page.close()
