"""The test infrastructure itself: private namespace, live server, Chromium with fake media."""

from __future__ import annotations

import os
import socket

from support import wait_for

from benchmarks.common import NETNS_LINKS
from example_site.app import create_app


def test_runs_in_private_network_namespace() -> None:
    if os.environ.get("LPCALL_NO_NETNS"):
        return
    assert os.environ.get("LPCALL_IN_NETNS") == "1"
    names = {name for _, name in socket.if_nameindex()}
    assert names == NETNS_LINKS, names  # loopback and the veth pair whose both ends are in here


def test_chromium_loopback_peer_connection_decodes_frames(browser, live_server) -> None:
    server = live_server(create_app())
    page = browser.new_page()
    page.goto(server.url + "/")
    page.evaluate(
        """async () => {
        const s = await navigator.mediaDevices.getUserMedia({video: true, audio: true});
        const a = new RTCPeerConnection(), b = new RTCPeerConnection();
        a.onicecandidate = e => e.candidate && b.addIceCandidate(e.candidate);
        b.onicecandidate = e => e.candidate && a.addIceCandidate(e.candidate);
        s.getTracks().forEach(t => a.addTrack(t, s));
        await a.setLocalDescription(); await b.setRemoteDescription(a.localDescription);
        await b.setLocalDescription(); await a.setRemoteDescription(b.localDescription);
        window.__pc = b;
    }"""
    )
    frames = wait_for(
        lambda: page.evaluate(
            "async () => { let n = 0; (await window.__pc.getStats()).forEach(r => { if (r.type === 'inbound-rtp' && r.kind === 'video') n += r.framesDecoded; }); return n; }"
        ),
        timeout=20,
        message="frames decoded",
    )
    assert frames > 0
    page.close()
