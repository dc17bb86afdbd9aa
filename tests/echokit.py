"""Hearing the demo agent's echo in Chromium: a microphone with a known tone, a WebAudio analyser.

Chromium's fake microphone plays a WAV file (``--use-file-for-fake-audio-capture``) with a beeping
1 kHz tone; the demo agent's own fallback tone is 440 Hz, so a 1 kHz peak in the remote audio is the
visitor's microphone coming back, not the agent's filler. The analyser sits on the newest peer
connection's remote audio track (a resumed call has a new connection).
"""

from __future__ import annotations

import math
import struct
import time
import wave
from pathlib import Path
from typing import Any

from resumekit import NEWEST_STATS_JS
from support import wait_for

MIC_HZ = 1000.0
RATE = 48_000


def write_mic_wav(path: Path, seconds: float = 4.0) -> Path:
    """Beeps of MIC_HZ: 300 ms on, 200 ms off (not a steady tone, which noise suppression would learn away)."""
    frames = bytearray()
    for i in range(int(RATE * seconds)):
        on = (i % int(RATE * 0.5)) < RATE * 0.3
        value = int(0.6 * 32767 * math.sin(2 * math.pi * MIC_HZ * i / RATE)) if on else 0
        frames += struct.pack("<h", value)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(bytes(frames))
    return path


def mic_args(wav: Path) -> list[str]:
    return [f"--use-file-for-fake-audio-capture={wav}"]


# The level (dBFS) at MIC_HZ and at 440 Hz, and the peak, of the newest connection's remote audio.
ANALYSE_JS = """
async (micHz) => {
  const pcs = (window.__lpcallPeers || []).filter(pc => pc.connectionState !== 'closed');
  const pc = pcs.at(-1);
  const receiver = pc && pc.getReceivers().find(r => r.track && r.track.kind === 'audio' && r.track.readyState === 'live');
  if (!receiver) return null;
  let a = window.__echoAnalyser;
  if (!a || a.track !== receiver.track) {
    const ctx = (a && a.ctx) || new AudioContext();
    await ctx.resume();
    const source = ctx.createMediaStreamSource(new MediaStream([receiver.track]));
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 4096;
    analyser.smoothingTimeConstant = 0;
    source.connect(analyser);
    a = window.__echoAnalyser = {ctx, track: receiver.track, source, analyser};
  }
  const bins = new Float32Array(a.analyser.frequencyBinCount);
  a.analyser.getFloatFrequencyData(bins);
  const binHz = a.ctx.sampleRate / a.analyser.fftSize;
  const level = (hz) => Math.max(...[-2, -1, 0, 1, 2].map(d => bins[Math.round(hz / binHz) + d]));
  let peak = 1;
  for (let i = 1; i < bins.length; i++) if (bins[i] > bins[peak]) peak = i;
  return {mic: level(micHz), tone: level(440), peakHz: peak * binHz, peakDb: bins[peak]};
}
"""


def hears_mic(sample: dict[str, Any] | None) -> bool:
    """The remote audio's loudest component is the microphone's tone, clearly above silence."""
    return bool(sample and sample["mic"] > -60 and abs(sample["peakHz"] - MIC_HZ) < 30)


def analyse(page: Any) -> dict[str, Any] | None:
    return page.evaluate(ANALYSE_JS, MIC_HZ)  # type: ignore[no-any-return]


def audio_bytes(page: Any) -> int:
    return int(page.evaluate(NEWEST_STATS_JS)["audioBytes"])


def assert_echo_for(page: Any, seconds: float, window: float = 3.0) -> dict[str, Any]:
    """For ``seconds``, check after check: the microphone's tone heard back and audio bytes growing, each
    within ``window`` seconds of the previous check (no silent gap longer than that).

    Returns figures: checks made, bytes received over the stretch, the loudest mic level.
    """
    wait_for(lambda: hears_mic(analyse(page)), timeout=20, message="the microphone's tone echoed back")
    start_bytes = audio_bytes(page)
    last_bytes = start_bytes
    loudest = -200.0
    end = time.monotonic() + seconds
    windows = 0
    while time.monotonic() < end:
        elapsed = seconds - (end - time.monotonic())
        heard = wait_for(lambda: (s := analyse(page)) and hears_mic(s) and s, timeout=window,
                         message=f"the echo after {elapsed:.0f} s")
        loudest = max(loudest, heard["mic"])
        last_bytes = wait_for(lambda floor=last_bytes: (b := audio_bytes(page)) > floor and b, timeout=window,
                              message=f"inbound audio bytes growing after {elapsed:.0f} s")
        windows += 1
    return {"windows": windows, "bytes": last_bytes - start_bytes, "loudest_mic_db": loudest}
