"""Video files: writing, probing, frame sampling (decord), browser-playable proxies, thumbnails."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

from curation.errors import VideoError


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

    H.264 in yuv420p needs even sizes, so odd sizes are padded by one pixel (edge copy) rather than
    silently rounded down. With ``timestamps_s`` the frames keep those presentation times (a variable
    frame rate file); otherwise they are spaced ``1 / fps`` apart. The file is written to a temporary
    name and renamed, so a killed process never leaves a half-written video under ``path``.
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    rate = Fraction(fps).limit_denominator(1001)
    options = {"crf": str(crf), "preset": preset} if codec == "libx264" else {}
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
                pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2
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
