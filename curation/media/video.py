"""Video files: writing, probing, frame sampling (decord), browser-playable proxies, thumbnails."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from curation.errors import VideoError

# Proxies are for people in a browser: H.264 yuv420p in MP4 plays everywhere (Chromium included); VP9 WebM is the
# other codec that plays there and keeps odd sizes. Both with settings that encode in real time on a laptop.
ENCODER_OPTIONS = {
    "libx264": lambda crf, preset: {"crf": str(crf), "preset": preset},
    "libvpx-vp9": lambda crf, preset: {"crf": str(crf + 10), "b": "0", "deadline": "realtime", "cpu-used": "8"},
}


def write_video(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    fps: float,
    *,
    codec: str = "libx264",
    crf: int = 23,
    preset: str = "veryfast",
    timestamps_s: Sequence[float] | None = None,
    faststart: bool = True,
) -> Path:
    """Encode RGB uint8 frames (H, W, 3) to a video file with PyAV.

    H.264 in yuv420p needs even sizes, so for libx264 odd sizes are padded by one pixel (edge copy) rather
    than silently rounded down; VP9 keeps odd sizes as they are. With ``timestamps_s`` the frames keep those
    presentation times (a variable frame rate file); otherwise they are spaced ``1 / fps`` apart. The file is
    written to a temporary name and renamed, so a killed process never leaves a half-written video at ``path``.
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    rate = Fraction(fps).limit_denominator(1001)
    options = ENCODER_OPTIONS.get(codec, lambda crf, preset: {})(crf, preset)
    container_options = {"movflags": "+faststart"} if faststart and path.suffix.lower() in {".mp4", ".mov"} else {}
    fmt = {".mp4": "mp4", ".mov": "mov", ".webm": "webm", ".mkv": "matroska", ".avi": "avi"}.get(path.suffix.lower())
    stream = None
    count = 0
    try:
        with av.open(str(tmp), mode="w", format=fmt, options=container_options) as container:
            for index, frame in enumerate(frames):
                frame = np.ascontiguousarray(frame, dtype=np.uint8)
                if frame.ndim != 3 or frame.shape[2] != 3:
                    raise VideoError(f"frame {index} has shape {frame.shape}; expected (height, width, 3) RGB")
                pad_h, pad_w = (frame.shape[0] % 2, frame.shape[1] % 2) if codec == "libx264" else (0, 0)
                if pad_h or pad_w:
                    frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
                if stream is None:
                    stream = container.add_stream(codec, rate=rate, options=options)
                    stream.width, stream.height = frame.shape[1], frame.shape[0]
                    stream.pix_fmt = "yuv420p"
                    if timestamps_s is not None:
                        stream.codec_context.time_base = Fraction(1, 90000)
                        stream.time_base = Fraction(1, 90000)
                video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
                if timestamps_s is not None:
                    video_frame.pts = round(timestamps_s[index] * 90000)
                    video_frame.time_base = Fraction(1, 90000)
                else:
                    video_frame.pts = index
                    video_frame.time_base = 1 / rate
                for packet in stream.encode(video_frame):
                    container.mux(packet)
                count += 1
            if stream is None:
                raise VideoError(f"no frames to write to {path}")
            for packet in stream.encode():
                container.mux(packet)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


@dataclass(frozen=True)
class VideoInfo:
    duration_s: float
    fps: float  # average frame rate
    width: int
    height: int
    n_frames: int
    codec: str | None
    bitrate: int | None  # bits per second of the whole file
    variable_frame_rate: bool


@dataclass(frozen=True)
class ProxyResult:
    path: Path
    n_frames: int
    fps: float
    width: int
    height: int
    decode_s: float
    encode_s: float


def _reader(path: str | os.PathLike):
    """A decord VideoReader, with decord's errors turned into a VideoError that says what is wrong.

    decord's own resizing (``width``/``height``) is not used: in decord 0.6 it returns repeated frames from
    ``get_batch`` (measured: indices 0-5 gave frames 0, 0, 2, 2, 4, 4), so frames are scaled with OpenCV.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise VideoError(f"cannot read file: {exc.strerror}") from None
    if size == 0:
        raise VideoError("empty file (0 bytes)")
    # OpenCV first: decord bundles an old zlib, and once it is loaded first OpenCV's PNG decoding fails
    # (cv2.imdecode returns None), which broke the frame pictures stored with clip features.
    import cv2  # noqa: F401
    import decord

    try:
        return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    except Exception as exc:  # decord raises its own DECORDError (and RuntimeError) for undecodable input
        raise VideoError(f"cannot decode as video: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    # decord puts the useful part ("moov atom not found", "Invalid data found…") on its last line
    message = lines[-1] if lines else type(exc).__name__
    return message.removeprefix("DECORDError: ").strip()[:300]


def _timestamps(reader) -> np.ndarray:
    """Start time of every frame in seconds, from the container's presentation times, starting at 0."""
    n = len(reader)
    starts = np.asarray(reader.get_frame_timestamp(np.arange(n)), dtype=np.float64).reshape(n, 2)[:, 0]
    if n > 1 and np.all(np.diff(starts) > 0):
        return starts - starts[0]
    # Broken or missing timestamps: fall back to the average rate.
    fps = reader.get_avg_fps() or 25.0
    return np.arange(n, dtype=np.float64) / fps


def probe(path: str | os.PathLike) -> VideoInfo:
    """Duration, frame rate, size and frame count of a video; VideoError if it cannot be decoded.

    The last frame is decoded too, so a file cut short (the index is there, the frames are not) fails here
    instead of half-way through making its proxy.
    """
    reader = _reader(path)
    n = len(reader)
    if n == 0:
        raise VideoError("no video frames")
    try:
        first = reader[0].shape
        reader[n - 1]
    except Exception as exc:
        raise VideoError(f"truncated or damaged: cannot decode all {n} frames ({_first_line(exc)})") from None
    starts = _timestamps(reader)
    intervals = np.diff(starts)
    fps = float(reader.get_avg_fps()) or (1.0 / float(np.median(intervals)) if n > 1 else 25.0)
    duration = _duration(reader, starts)
    variable = bool(n > 2 and (intervals.max() - intervals.min()) > 0.25 * np.median(intervals))
    codec, bitrate = _codec_and_bitrate(path)
    return VideoInfo(
        duration_s=round(duration, 6),
        fps=round(fps, 6),
        width=int(first[1]),
        height=int(first[0]),
        n_frames=n,
        codec=codec,
        bitrate=bitrate,
        variable_frame_rate=variable,
    )


def _codec_and_bitrate(path: str | os.PathLike) -> tuple[str | None, int | None]:
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            return stream.codec_context.name, (int(container.bit_rate) if container.bit_rate else None)
    except Exception:  # decord could read it; codec and bitrate are nice to have, not required
        return None, None


def proxy_size(width: int, height: int, max_height: int) -> tuple[int, int]:
    """Even (width, height) no higher than ``max_height``, keeping the aspect ratio (H.264 needs even sizes)."""
    out_height = min(height, max_height)
    out_height = max(2, out_height - out_height % 2)
    out_width = max(2, 2 * round(width * out_height / height / 2))
    return out_width, out_height


def sample_times(
    duration_s: float,
    *,
    num_frames: int | None = None,
    fps: float | None = None,
    start_s: float = 0.0,
    end_s: float | None = None,
) -> np.ndarray:
    """Times (s) at which to take frames: ``num_frames`` at the centres of equal parts of [start, end), or one
    every ``1 / fps`` seconds (at most ``num_frames`` if both are given: then evenly thinned)."""
    end_s = duration_s if end_s is None else min(end_s, duration_s)
    length = end_s - start_s
    if length <= 0:
        raise VideoError(f"empty time range [{start_s}, {end_s}) in a {duration_s:.3f} s video")
    if fps is not None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        count = max(1, int(np.floor(length * fps + 1e-3)))  # float32 timestamps: 2 s can read 1.9999999
        times = start_s + (np.arange(count) + 0.5) / fps
        if num_frames is not None and count > num_frames:
            times = times[np.linspace(0, count - 1, num_frames).round().astype(int)]
        return times
    if num_frames is None or num_frames < 1:
        raise ValueError("give num_frames (a positive count) or fps")
    return start_s + (np.arange(num_frames) + 0.5) * length / num_frames


def _indices_at(starts: np.ndarray, times: np.ndarray) -> np.ndarray:
    """The frame shown at each time: the last frame that starts at or before it.

    decord's timestamps are float32 (0.3 comes back as 0.30000001), so a frame counts as started a tenth of a
    frame interval early.
    """
    tolerance = 0.1 * float(np.median(np.diff(starts))) if len(starts) > 1 else 1e-3
    return np.clip(np.searchsorted(starts, times + tolerance, side="right") - 1, 0, len(starts) - 1)


def _scaled(frames: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Frames scaled to (width, height) with area averaging, or as they are."""
    if size is None or (frames.shape[2], frames.shape[1]) == size:
        return frames
    import cv2

    return np.stack([cv2.resize(frame, size, interpolation=cv2.INTER_AREA) for frame in frames])


def _decode(reader, indices: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    try:
        return reader.get_batch(indices).asnumpy()
    except Exception as exc:
        raise VideoError(f"cannot decode frames of {path}: {_first_line(exc)}") from None


def sample_frames(
    path: str | os.PathLike,
    *,
    num_frames: int | None = None,
    fps: float | None = None,
    start_s: float = 0.0,
    end_s: float | None = None,
    max_height: int | None = None,
) -> np.ndarray:
    """RGB uint8 frames, shape (k, height, width, 3), taken at :func:`sample_times` by presentation time, so
    variable frame rate files are sampled evenly in time. ``max_height`` scales frames down while decoding."""
    reader = _reader(path)
    height, width = reader[0].shape[:2]
    size = proxy_size(width, height, max_height) if max_height is not None and height > max_height else None
    starts = _timestamps(reader)
    times = sample_times(_duration(reader, starts), num_frames=num_frames, fps=fps, start_s=start_s, end_s=end_s)
    return _scaled(_decode(reader, _indices_at(starts, times), path), size)


def _duration(reader, starts: np.ndarray) -> float:
    """Presentation time of the last frame plus its (typical) length."""
    interval = float(np.median(np.diff(starts))) if len(starts) > 1 else 1.0 / (reader.get_avg_fps() or 25.0)
    return float(starts[-1] + interval)


def make_proxy(
    source: str | os.PathLike,
    target: str | os.PathLike,
    *,
    max_height: int = 480,
    start_s: float = 0.0,
    end_s: float | None = None,
    crf: int = 23,
    batch_size: int = 32,
) -> ProxyResult:
    """A browser-playable copy: H.264, yuv420p, MP4 with ``+faststart``, constant frame rate, even size, at most
    ``max_height`` high, optionally cut to [start_s, end_s) to the frame.

    Variable frame rate sources are resampled to their average rate by presentation time (the frame shown at
    each output instant), so playback speed and frame stepping in the browser are right.
    """
    reader = _reader(source)
    height, width = reader[0].shape[:2]
    out_width, out_height = proxy_size(width, height, max_height)
    starts = _timestamps(reader)
    fps = float(reader.get_avg_fps()) or 25.0
    duration = _duration(reader, starts)
    end = duration if end_s is None else min(end_s, duration)
    count = max(1, int(round((end - start_s) * fps)))
    indices = _indices_at(starts, start_s + np.arange(count) / fps)
    decode_s = 0.0

    def frames() -> Iterable[np.ndarray]:
        nonlocal decode_s
        for offset in range(0, len(indices), batch_size):
            tic = time.perf_counter()
            batch = _scaled(_decode(reader, indices[offset : offset + batch_size], source), (out_width, out_height))
            decode_s += time.perf_counter() - tic
            yield from batch

    started = time.perf_counter()
    write_video(target, frames(), fps, crf=crf)
    total = time.perf_counter() - started
    return ProxyResult(Path(target), count, fps, out_width, out_height, decode_s, total - decode_s)


def make_thumbnail(
    source: str | os.PathLike, target: str | os.PathLike, *, at_s: float = 0.0, max_width: int = 320
) -> Path:
    """A JPEG of the frame shown at ``at_s`` seconds, at most ``max_width`` wide."""
    import cv2

    reader = _reader(source)
    starts = _timestamps(reader)
    index = int(_indices_at(starts, np.array([at_s]))[0])
    try:
        frame = reader[index].asnumpy()
    except Exception as exc:
        raise VideoError(f"cannot decode the thumbnail frame of {source}: {_first_line(exc)}") from None
    height, width = frame.shape[:2]
    if width > max_width:
        frame = cv2.resize(frame, (max_width, max(1, round(height * max_width / width))), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise VideoError(f"cannot encode a JPEG thumbnail for {source}")
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    tmp.write_bytes(encoded.tobytes())
    os.replace(tmp, target)
    return target
