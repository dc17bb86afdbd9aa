"""The demo agent echoes the visitor's microphone (issue 13 point 2), heard in Chromium.

A visitor asks the demo agent for a call; a WebAudio analyser on the remote audio shows the fake
microphone's 1 kHz beeps coming back, and the inbound audio bytes grow, for a long stretch of the
call (LPCALL_ECHO_SECONDS, default 60), after a resume (reload), and on a second call in a row.
Before the fix the echo stopped after the first packets (aiortc: "Frame does not match
AudioResampler setup": the echoed stereo frames after the mono filler tone).
"""

from __future__ import annotations

import fractions
import logging
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from echokit import assert_echo_for, mic_args, write_mic_wav
from support import launch_chromium, start_chat, wait_for

from flask_lpcall.peer.aioloop import BackgroundLoop
from flask_lpcall.peer.demo import DemoAgent
from flask_lpcall.peer.media import EchoAudioTrack

ECHO_SECONDS = float(os.environ.get("LPCALL_ECHO_SECONDS", "60"))
pytestmark = pytest.mark.timeout(int(ECHO_SECONDS) + 240)


def test_echo_track_feeds_the_opus_encoder_whatever_comes_in() -> None:
    """Filler tone, then decoded stereo, then mono at 16 kHz: aiortc's real Opus encoder takes every frame."""
    from aiortc.codecs.opus import OpusEncoder
    from av import AudioFrame

    def frame(samples: np.ndarray, layout: str, rate: int) -> AudioFrame:
        f = AudioFrame.from_ndarray(samples.astype(np.int16).reshape(1, -1), format="s16", layout=layout)
        f.sample_rate, f.pts, f.time_base = rate, 0, fractions.Fraction(1, rate)
        return f

    async def run() -> list[Any]:
        track, encoder, sent = EchoAudioTrack(), OpusEncoder(), []
        for _ in range(3):
            sent.append(await track.recv())  # the filler tone
        for _ in range(5):  # what aiortc's Opus decoder hands the peer: s16 stereo 48 kHz
            track.push(frame(np.full(1920, 1234), "stereo", 48_000))
        for _ in range(5):
            sent.append(await track.recv())
        for _ in range(10):  # another source: mono at 16 kHz
            track.push(frame(np.full(320, -777), "mono", 16_000))
        for _ in range(3):
            sent.append(await track.recv())
        for f in sent:
            encoder.encode(f)  # raised "Frame does not match AudioResampler setup" before the fix
        assert track.echoed >= 7
        return sent

    loop = BackgroundLoop("echo-track")  # not asyncio.run: Playwright's loop may be running in this thread
    try:
        sent = loop.run(run(), timeout=60)
    finally:
        loop.stop()
    assert {(f.format.name, f.layout.name, f.sample_rate, f.samples) for f in sent} == {("s16", "stereo", 48_000, 960)}
    assert (sent[3].to_ndarray() == 1234).all()  # the echoed samples themselves
    assert [f.pts for f in sent] == [i * 960 for i in range(len(sent))]


@pytest.fixture(scope="module")
def echo_browser(playwright: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    wav = write_mic_wav(tmp_path_factory.mktemp("mic") / "mic-1khz.wav")
    browser = launch_chromium(playwright, mic_args(wav))
    yield browser
    browser.close()


def _ask_for_a_call(page: Any) -> None:
    page.fill("#lpcall-message", "call me")
    page.click(".lpcall-composer [type=submit]")
    page.click(".lpcall-invitation .lpcall-accept")
    page.wait_for_selector(".lpcall-call video.lpcall-remote")


def _echo_track(agent: DemoAgent) -> EchoAudioTrack:
    peer = wait_for(lambda: next(iter(agent.calls.values()), None), timeout=10, message="the demo call")
    return peer._audio_arg  # type: ignore[no-any-return]


def test_the_echo_is_heard_for_a_whole_call_after_a_resume_and_on_a_second_call(
    echo_browser: Any, demo_site: tuple[Any, DemoAgent], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    server, agent = demo_site
    ctx = echo_browser.new_context(viewport={"width": 1000, "height": 800})
    ctx.add_init_script("window.__lpcallTest = true;")
    page = ctx.new_page()
    page.set_default_timeout(30_000)
    try:
        start_chat(page, server.url)
        page.locator(".lpcall-transcript").get_by_text("Hi, I'm Demo agent").wait_for()

        _ask_for_a_call(page)
        track = _echo_track(agent)
        whole = assert_echo_for(page, ECHO_SECONDS)
        print(f"\nfirst call: echo heard for {ECHO_SECONDS:g} s in {whole['windows']} checks, "
              f"{whole['bytes']} audio bytes, loudest mic {whole['loudest_mic_db']:.1f} dBFS")
        assert track.echoed > ECHO_SECONDS * 25  # 50 frames/s, most of them the visitor's own audio

        page.reload()  # the call resumes on a new peer connection
        page.wait_for_selector(".lpcall-call video.lpcall-remote")
        resumed = assert_echo_for(page, 10)
        print(f"after the resume: {resumed['windows']} checks, {resumed['bytes']} audio bytes")

        page.click(".lpcall-call .lpcall-hangup")
        wait_for(lambda: not agent.calls, timeout=15, message="the demo agent leaves the ended call")
        _ask_for_a_call(page)
        second = assert_echo_for(page, 10)
        print(f"second call: {second['windows']} checks, {second['bytes']} audio bytes")
        page.click(".lpcall-call .lpcall-hangup")
    finally:
        ctx.close()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and "AudioResampler" in r.getMessage()]
    assert not errors, errors
