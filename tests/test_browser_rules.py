"""Safari's (and webviews') rules, checked where this machine can check them, in Chromium:

* every ``<video>`` plays inline (``playsinline``), the local preview is muted;
* the camera and microphone start only at the Accept, inside its click (user activation), never
  while the invitation is shown;
* the agent's offer carries both H.264 (constrained baseline, what Safari decodes in hardware) and
  VP8, and reaches the visitor unchanged;
* remote sound under a strict autoplay policy (``--autoplay-policy=document-user-activation-required``,
  as Safari): the Accept click starts it; after a reload, which has no click, the call resumes and a
  "Tap to hear …" button starts the sound with the visitor's tap instead of leaving the call silent.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from resumekit import Rig
from support import CHROMIUM, CHROMIUM_ARGS, wait_for

from flask_lpcall.state import get_state

pytestmark = [pytest.mark.browser, pytest.mark.media]

# Records every getUserMedia call: when, and whether the page had a user activation at that moment.
GUM_RECORDER = """
window.__gum = [];
(() => {
  const md = navigator.mediaDevices; if (!md) return;
  const orig = md.getUserMedia.bind(md);
  md.getUserMedia = (c) => { window.__gum.push({t: performance.now(), active: navigator.userActivation.isActive,
    video: Boolean(c && c.video)}); return orig(c); };
})();
document.addEventListener('click', (e) => {
  if (e.target.closest && e.target.closest('.lpcall-accept')) window.__acceptClick = performance.now();
}, true);
"""

REMOTE_PLAYING_JS = """() => { const m = document.querySelector('.lpcall-call .lpcall-remote, .lpcall-call .lpcall-remote-audio');
  return m ? {paused: m.paused, hasStream: Boolean(m.srcObject)} : null; }"""


@pytest.fixture(scope="module")
def strict_chromium(playwright: Any) -> Iterator[Any]:
    """Chromium with Safari's autoplay rule: sound plays only after a user activation in the page."""
    args = [a for a in CHROMIUM_ARGS if not a.startswith("--autoplay-policy")]
    b = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=[*args, "--autoplay-policy=document-user-activation-required"])
    yield b
    b.close()


class RulesRig(Rig):
    def context(self) -> Any:
        ctx = super().context()
        ctx.add_init_script(GUM_RECORDER)
        return ctx


@pytest.fixture
def rig(strict_chromium: Any, live_server: Any) -> Iterator[Any]:
    rigs: list[RulesRig] = []

    def make(**config: Any) -> RulesRig:
        r = RulesRig(strict_chromium, live_server, **config)
        rigs.append(r)
        return r

    yield make
    for r in rigs:
        r.close()


def test_inline_video_media_at_the_accept_gesture_and_both_codecs(rig: Any) -> None:
    r = rig()
    r.open_agent()
    r.open_consumer()
    r.agent.click(".lpcall-mine .lpcall-conv-open")
    r.agent.click("button.lpcall-call-btn[data-mode=VIDEO_CALL]")
    r.consumer.wait_for_selector(".lpcall-invitation .lpcall-accept")
    # the visitor's window listens and holds the agent's offer: still no camera, no microphone
    wait_for(lambda: r.consumer.evaluate("(window.__lpcallPeers || []).some((pc) => pc.signalingState === 'have-remote-offer')"),
             timeout=20, message="the offer kept while the invitation is shown")
    assert r.consumer.evaluate("window.__gum") == []
    r.consumer.click(".lpcall-invitation .lpcall-accept")
    for page in (r.agent, r.consumer):
        r.wait_frames(page)
    gum = r.consumer.evaluate("window.__gum")
    accept_at = r.consumer.evaluate("window.__acceptClick")
    assert gum and all(g["t"] >= accept_at and g["active"] for g in gum), (gum, accept_at)
    # playsinline everywhere, the local preview muted
    videos = r.consumer.evaluate("[...document.querySelectorAll('video')].map((v) => ({inline: v.playsInline, "
                                 "attr: v.hasAttribute('playsinline'), local: v.classList.contains('lpcall-local'), muted: v.muted}))")
    assert videos and all(v["inline"] and v["attr"] for v in videos), videos
    assert all(v["muted"] for v in videos if v["local"])
    # the Accept click started the remote media under the strict autoplay policy
    assert r.consumer.evaluate(REMOTE_PLAYING_JS) == {"paused": False, "hasStream": True}
    # the agent's offer carries H.264 constrained baseline and VP8, and the visitor got it unchanged
    offer = r.consumer.evaluate("window.__lpcallPeers.at(-1).remoteDescription.sdp")
    assert "VP8/90000" in offer and "H264/90000" in offer and "profile-level-id=42e01f" in offer
    r.consumer.click(".lpcall-call .lpcall-hangup")


def test_after_a_reload_the_remote_sound_plays_without_a_click(rig: Any) -> None:
    """The reloaded page captures the microphone again for the resumed call, and a capturing page may
    play sound (Chromium and Safari both allow it): no tap needed."""
    r = rig()
    r.start("VOICE_CALL")
    assert r.consumer.evaluate(REMOTE_PLAYING_JS) == {"paused": False, "hasStream": True}
    r.consumer.reload()
    wait_for(lambda: r.events(r.consumer, "cobrowse", "sessionResume"), timeout=15, message="sessionResume")
    r.wait_frames(r.consumer, video=False)
    wait_for(lambda: r.consumer.evaluate(REMOTE_PLAYING_JS) == {"paused": False, "hasStream": True}, timeout=10, message="sound plays")
    # The button hides when play() resolves, a moment after `paused` turns false.
    r.consumer.locator(".lpcall-sound-on").wait_for(state="hidden", timeout=10_000)
    r.consumer.click(".lpcall-call .lpcall-hangup")


# A webview that plays media only inside a user action (WKWebView's
# mediaTypesRequiringUserActionForPlayback): play() is refused outside a click's handling.
WEBVIEW_AUTOPLAY_RULE = """
(() => { const play = HTMLMediaElement.prototype.play;
  let inAction = false;  // true only while a click is being handled
  document.addEventListener('click', () => { inAction = true; setTimeout(() => { inAction = false; }); }, true);
  HTMLMediaElement.prototype.play = function () {
    if (!inAction) return Promise.reject(new DOMException('play() needs a user action', 'NotAllowedError'));
    return play.call(this);
  };
})();
"""


def test_a_webview_that_refuses_autoplay_gets_a_tap_to_hear_button(rig: Any) -> None:
    r = rig()
    r.start("VOICE_CALL")
    r.consumer.context.add_init_script(WEBVIEW_AUTOPLAY_RULE)  # from the reloaded page on
    r.consumer.reload()
    wait_for(lambda: r.events(r.consumer, "cobrowse", "sessionResume"), timeout=15, message="sessionResume")
    r.wait_frames(r.consumer, video=False)
    label = get_state(r.app).texts["call.sound_on"].format(name="Bob")
    button = r.consumer.get_by_role("button", name=label)
    button.wait_for(state="visible", timeout=15_000)
    button.click()  # play() inside the tap is allowed
    wait_for(lambda: r.consumer.evaluate(REMOTE_PLAYING_JS)["paused"] is False, timeout=10, message="sound playing after the tap")
    # The button hides when play() resolves, a moment after `paused` turns false.
    r.consumer.locator(".lpcall-sound-on").wait_for(state="hidden", timeout=10_000)
    r.consumer.click(".lpcall-call .lpcall-hangup")
