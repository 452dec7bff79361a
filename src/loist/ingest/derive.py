"""Derived audio: waveform peaks and web renditions, made with ffmpeg from a stored original.

* :func:`web_playable`: whether every major browser (Chrome, Edge, Firefox, Safari on macOS and
  iOS) plays a format/codec pair natively; the ones that do not get a rendition (the table is
  documented in docs/embedding.md and kept by its test).
* :func:`waveform_peaks`: min/max peaks of the mixed-down audio, in the BBC ``waveform-data`` JSON
  format version 2 (what ``waveform-data.js`` and ``peaks.js`` read, and what ``audiowaveform
  --output-format json`` writes): ``{"version": 2, "channels": 1, "sample_rate", "samples_per_pixel",
  "bits": 8, "length", "data": [min0, max0, min1, max1, ...]}``. ffmpeg decodes to 16-bit PCM on a
  pipe and the peaks are taken as it streams: memory stays at one read buffer, whatever the length.
* :func:`transcode_rendition`: AAC-LC in an MP4 container (``.m4a``, ``faststart`` so playback
  starts before the whole file has arrived): the one lossy format every major browser plays.

ffmpeg runs at low CPU priority (``nice``) with a time limit: derived work must not slow requests.
"""

from __future__ import annotations

import array
import json
import math
import shutil
import subprocess  # nosec B404 - ffmpeg with fixed arguments, never a shell
import sys
from pathlib import Path
from typing import Any

from loist.errors import ConfigInvalid, InvalidFormat, Timeout

WAVEFORM_VERSION = 2
WAVEFORM_POINTS = 1800  # min/max pairs for a whole track: a wide player has ~1 per pixel
MIN_SAMPLES_PER_PIXEL = 64
RENDITION_BITRATE = "192k"
RENDITION_MIME = "audio/mp4"
RENDITION_MAX_RATE = 48000  # AAC in browsers: 8-48 kHz (DSD and 88.2+ kHz sources are resampled)
READ_BYTES = 1 << 16
NICE = 10

# (format, codec) pairs every major browser plays natively; anything else gets a web rendition.
WEB_PLAYABLE: frozenset[tuple[str, str]] = frozenset({
    ("mp3", "mp3"),
    ("m4a", "aac"),
    ("m4a", "mp3"),
    ("aac", "aac"),
    ("flac", "flac"),
    ("wav", "pcm_u8"),
    ("wav", "pcm_s16le"),
    ("wav", "pcm_s24le"),
})


def web_playable(fmt: str | None, codec: str | None) -> bool:
    """Whether Chrome, Edge, Firefox and Safari (macOS and iOS) all play this pair as stored."""
    return (fmt or "", codec or "") in WEB_PLAYABLE


def _ffmpeg(*args: str) -> list[str]:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise ConfigInvalid("ffmpeg is not installed: derived audio (waveforms, renditions) needs it")
    nice = shutil.which("nice")
    prefix = [nice, "-n", str(NICE)] if nice else []
    return [*prefix, ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", *args]


def samples_per_pixel(duration_s: float | None, sample_rate: int) -> int:
    """Samples per min/max pair: about :data:`WAVEFORM_POINTS` pairs for the whole track."""
    total = (duration_s or 0) * sample_rate
    return max(MIN_SAMPLES_PER_PIXEL, math.ceil(total / WAVEFORM_POINTS)) if total else 512


def waveform_peaks(path: Path, *, duration_s: float | None, sample_rate: int | None, timeout_s: float) -> dict[str, Any]:
    """The waveform-data v2 JSON object of the audio at ``path`` (8-bit, one mixed-down channel)."""
    rate = sample_rate if sample_rate and 8000 <= sample_rate <= 192000 else 44100
    spp = samples_per_pixel(duration_s, rate)
    cmd = _ffmpeg("-i", str(path), "-vn", "-ac", "1", "-ar", str(rate), "-f", "s16le", "-acodec", "pcm_s16le", "pipe:1")
    data: list[int] = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:  # noqa: S603  # nosec B603
        assert proc.stdout is not None
        try:
            _peaks(proc.stdout, spp, data)
            _, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise Timeout(f"decoding for the waveform took longer than {timeout_s:g} s") from None
    if proc.returncode != 0:
        raise InvalidFormat(f"ffmpeg could not decode the audio: {_tail(err)}")
    return {
        "version": WAVEFORM_VERSION, "channels": 1, "sample_rate": rate, "samples_per_pixel": spp,
        "bits": 8, "length": len(data) // 2, "data": data,
    }


def _peaks(stream: Any, spp: int, out: list[int]) -> None:
    """Append (min, max) per ``spp`` samples read from 16-bit little-endian PCM, scaled to 8 bits."""
    pending = b""
    window = spp * 2
    while True:
        chunk = stream.read(max(READ_BYTES, window))
        if not chunk:
            break
        pending += chunk
        usable = len(pending) - len(pending) % window
        _pairs(pending[:usable], spp, out)
        pending = pending[usable:]
    usable = len(pending) - len(pending) % 2
    if usable:
        _pairs(pending[:usable], spp, out)


def _pairs(raw: bytes, spp: int, out: list[int]) -> None:
    samples = array.array("h")
    samples.frombytes(raw)
    if sys.byteorder == "big":
        samples.byteswap()
    for start in range(0, len(samples), spp):
        window = samples[start : start + spp]
        out.append(min(window) >> 8)
        out.append(max(window) >> 8)


def waveform_bytes(waveform: dict[str, Any]) -> bytes:
    return json.dumps(waveform, separators=(",", ":")).encode()


def transcode_rendition(
    source: Path, dest: Path, *, channels: int | None, sample_rate: int | None, timeout_s: float
) -> None:
    """Write an AAC-LC ``.m4a`` of ``source`` to ``dest`` (stereo at most, 48 kHz at most)."""
    args = ["-y", "-i", str(source), "-vn", "-map", "0:a:0", "-c:a", "aac", "-b:a", RENDITION_BITRATE]
    args += ["-ac", str(min(channels or 2, 2))]
    if not sample_rate or sample_rate > RENDITION_MAX_RATE:
        args += ["-ar", str(RENDITION_MAX_RATE if (sample_rate or 0) % 44100 else 44100)]
    args += ["-map_metadata", "-1", "-fflags", "+bitexact", "-flags:a", "+bitexact"]
    args += ["-movflags", "+faststart", "-f", "mp4", str(dest)]
    try:
        done = subprocess.run(_ffmpeg(*args), capture_output=True, timeout=timeout_s, check=False)  # noqa: S603  # nosec B603
    except subprocess.TimeoutExpired:
        raise Timeout(f"transcoding the web rendition took longer than {timeout_s:g} s") from None
    if done.returncode != 0:
        raise InvalidFormat(f"ffmpeg could not transcode the audio: {_tail(done.stderr)}")


def _tail(stderr: bytes | None) -> str:
    text = (stderr or b"").decode("utf-8", "replace").strip()
    return text[-500:] or "no message"
