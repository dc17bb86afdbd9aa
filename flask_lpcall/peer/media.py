"""Synthetic media for the Python peer: a moving test pattern, a tone, an echo.

The test pattern is eight vertical colour bars (:data:`BARS`) over the top three
quarters of the picture and a dark band with a white square that moves one step per
frame; a receiver can check the decoded bars pixel by pixel. :class:`TestPatternTrack`
can show a live picture (e.g. the remote camera) as an inset in its bottom-right
corner, and :class:`EchoAudioTrack` plays back audio frames pushed into it, falling
back to a quiet tone; together they make the demo agent's "test pattern plus an echo
of you".
"""

from __future__ import annotations

import asyncio
import fractions
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, AudioResampler, VideoFrame

#: The colour bars, left to right (RGB): white, yellow, cyan, green, magenta, red, blue, black.
BARS: tuple[tuple[int, int, int], ...] = (
    (235, 235, 235),
    (235, 235, 16),
    (16, 235, 235),
    (16, 235, 16),
    (235, 16, 235),
    (235, 16, 16),
    (16, 16, 235),
    (16, 16, 16),
)

VIDEO_CLOCK = 90_000
AUDIO_RATE = 48_000
AUDIO_PTIME = 0.020
#: What :class:`EchoAudioTrack` sends: (sample format, channel layout, rate), the Opus encoder's setup.
ECHO_FORMAT = ("s16", "stereo", AUDIO_RATE)
ECHO_CHANNELS = 2


def pattern_image(width: int, height: int) -> np.ndarray:
    """The static part of the pattern as an RGB ``(height, width, 3)`` array."""
    img = np.empty((height, width, 3), dtype=np.uint8)
    bars_h = height * 3 // 4
    for i, colour in enumerate(BARS):
        x0, x1 = i * width // len(BARS), (i + 1) * width // len(BARS)
        img[:bars_h, x0:x1] = colour
    img[bars_h:] = (40, 40, 40)
    return img


def bar_at(x_fraction: float) -> tuple[int, int, int]:
    """The expected colour of the bar at ``x_fraction`` (0..1) of the picture width."""
    return BARS[min(int(x_fraction * len(BARS)), len(BARS) - 1)]


class _Clock:
    """Paces frames in real time from a start instant (like aiortc's dummy tracks)."""

    def __init__(self, rate: int, step: int) -> None:
        self.rate, self.step = rate, step
        self.start: float | None = None
        self.pts = 0

    async def tick(self) -> int:
        if self.start is None:
            self.start = time.monotonic()
            return 0
        self.pts += self.step
        delay = self.start + self.pts / self.rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        return self.pts


class TestPatternTrack(MediaStreamTrack):
    """Video: colour bars, a moving square and an optional live inset.

    ``inset`` returns the latest frame to show in the corner (or ``None``).
    """

    kind = "video"
    __test__ = False  # not a pytest test class

    def __init__(
        self,
        width: int = 640,
        height: int = 360,
        fps: int = 15,
        inset: Callable[[], VideoFrame | None] | None = None,
    ) -> None:
        super().__init__()
        self.width, self.height = width - width % 2, height - height % 2
        self._base = pattern_image(self.width, self.height)
        self._clock = _Clock(VIDEO_CLOCK, VIDEO_CLOCK // fps)
        self._inset = inset
        self.frames_sent = 0

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        pts = await self._clock.tick()
        img = self._base.copy()
        bars_h = self.height * 3 // 4
        side = max(8, (self.height - bars_h) // 2)
        span = max(1, self.width - side)
        x = (self.frames_sent * 8) % span
        y = bars_h + (self.height - bars_h - side) // 2
        img[y : y + side, x : x + side] = 255
        inset = self._inset() if self._inset else None
        if inset is not None:
            w, h = self.width // 4 - self.width // 4 % 2, self.height // 4 - self.height // 4 % 2
            small = inset.reformat(width=w, height=h, format="rgb24").to_ndarray()
            img[self.height - h :, self.width - w :] = small
        frame = VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = pts
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self.frames_sent += 1
        return frame


def _tone_frame(pts: int, samples: int, hz: float, amplitude: float) -> AudioFrame:
    t = (np.arange(samples) + pts) / AUDIO_RATE
    data = (np.sin(2 * math.pi * hz * t) * amplitude * 32767).astype(np.int16).reshape(1, -1)
    frame = AudioFrame.from_ndarray(data, format="s16", layout="mono")
    frame.sample_rate = AUDIO_RATE
    frame.pts = pts
    frame.time_base = fractions.Fraction(1, AUDIO_RATE)
    return frame


class ToneTrack(MediaStreamTrack):
    """Audio: a continuous sine tone (default 440 Hz, quiet)."""

    kind = "audio"

    def __init__(self, hz: float = 440.0, amplitude: float = 0.1) -> None:
        super().__init__()
        self.hz, self.amplitude = hz, amplitude
        self._samples = int(AUDIO_RATE * AUDIO_PTIME)
        self._clock = _Clock(AUDIO_RATE, self._samples)

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        pts = await self._clock.tick()
        return _tone_frame(pts, self._samples, self.hz, self.amplitude)


class EchoAudioTrack(ToneTrack):
    """Audio: plays back what :meth:`push` receives (the remote voice), else a quiet tone.

    Every frame it sends has one format, whatever comes in: ``s16`` stereo at 48 kHz in
    20 ms frames (:data:`ECHO_FORMAT`), which is what aiortc's Opus encoder is set up for
    (its resampler refuses a frame whose format, layout or rate differs from the first one).
    Pushed frames (a decoder's stereo, a file's mono, any rate) are resampled into a sample
    buffer that holds at most ``max_buffer`` seconds; the oldest samples give way.
    """

    def __init__(self, hz: float = 440.0, amplitude: float = 0.05, max_buffer: float = 0.5) -> None:
        super().__init__(hz, amplitude)
        self._max_samples = int(AUDIO_RATE * max_buffer)
        self._buffer = np.zeros((0, ECHO_CHANNELS), dtype=np.int16)
        self._resampler: Any = None
        self._resampler_key: tuple[str, str, int] | None = None
        self.echoed = 0

    def _resample(self, frame: AudioFrame) -> list[AudioFrame]:
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if key != self._resampler_key:  # a new source (e.g. after a resume): a resampler set up for it
            self._resampler = AudioResampler(format=ECHO_FORMAT[0], layout=ECHO_FORMAT[1], rate=ECHO_FORMAT[2])
            self._resampler_key = key
        frame.pts = None  # the resampler needs no timing; the output is re-stamped in recv()
        return list(self._resampler.resample(frame))

    def push(self, frame: AudioFrame) -> None:
        """Queue a received frame for the echo (any sample format, layout and rate)."""
        for out in self._resample(frame):
            samples = out.to_ndarray().reshape(-1, ECHO_CHANNELS)  # packed s16: L R L R …
            self._buffer = np.concatenate([self._buffer, samples])[-self._max_samples :]

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        pts = await self._clock.tick()
        if len(self._buffer) >= self._samples:
            data, self._buffer = self._buffer[: self._samples], self._buffer[self._samples :]
            self.echoed += 1
        else:
            tone = _tone_frame(pts, self._samples, self.hz, self.amplitude).to_ndarray().reshape(-1, 1)
            data = np.repeat(tone, ECHO_CHANNELS, axis=1)
        frame = AudioFrame.from_ndarray(np.ascontiguousarray(data).reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate = AUDIO_RATE
        frame.pts = pts
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        return frame
