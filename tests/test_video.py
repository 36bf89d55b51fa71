"""Video: probing, time-correct frame sampling, proxies (variable frame rate, odd sizes, cuts), thumbnails, errors.

Test videos encode each frame's index in its grey level, so what was decoded can be checked frame by frame.
"""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curation.errors import VideoError
from curation.media.video import make_proxy, make_thumbnail, probe, proxy_size, sample_frames, sample_times, write_video

LEVEL_STEP = 8  # grey level per frame index: far enough apart to survive lossy coding


def grey_frames(count: int, height: int = 64, width: int = 96) -> list[np.ndarray]:
    return [np.full((height, width, 3), 10 + LEVEL_STEP * i, np.uint8) for i in range(count)]


def frame_index(frames: np.ndarray) -> np.ndarray:
    return np.round((frames.reshape(len(frames), -1).mean(axis=1) - 10) / LEVEL_STEP).astype(int)


def test_probe_constant_rate(tmp_path: Path) -> None:
    path = write_video(tmp_path / "cfr.mp4", grey_frames(30), fps=15)
    info = probe(path)
    assert (info.width, info.height, info.n_frames) == (96, 64, 30)
    assert info.fps == pytest.approx(15.0) and info.duration_s == pytest.approx(2.0, abs=1e-6)
    assert info.codec == "h264" and info.bitrate and not info.variable_frame_rate


def test_sample_frames_by_count_and_by_fps(tmp_path: Path) -> None:
    path = write_video(tmp_path / "cfr.mp4", grey_frames(30), fps=15)  # 2 s, frame i shown from i/15 s
    uniform = sample_frames(path, num_frames=4)  # centres of 4 quarters: 0.25, 0.75, 1.25, 1.75 s
    assert uniform.shape == (4, 64, 96, 3) and uniform.dtype == np.uint8
    assert frame_index(uniform).tolist() == [3, 11, 18, 26]
    by_fps = sample_frames(path, fps=2)  # every 0.5 s, at 0.25, 0.75, ...
    assert frame_index(by_fps).tolist() == [3, 11, 18, 26]
    capped = sample_frames(path, fps=10, num_frames=5)  # 20 instants thinned evenly to 5
    assert len(capped) == 5 and frame_index(capped)[0] == 0 and frame_index(capped)[-1] == 29
    window = sample_frames(path, num_frames=2, start_s=1.0, end_s=2.0)
    assert frame_index(window).tolist() == [18, 26]
    small = sample_frames(path, num_frames=1, max_height=32)
    assert small.shape == (1, 32, 48, 3)


def test_sample_times_validation() -> None:
    assert sample_times(10.0, num_frames=2).tolist() == [2.5, 7.5]
    with pytest.raises(ValueError, match="num_frames"):
        sample_times(10.0)
    with pytest.raises(VideoError, match="empty time range"):
        sample_times(10.0, num_frames=2, start_s=12.0)


def test_variable_frame_rate_is_resampled_by_time(tmp_path: Path) -> None:
    # 30 frames whose display times stretch: 0.1 s apart, then 0.3 s apart (a camera dropping frames).
    times = [0.1 * i for i in range(15)] + [1.5 + 0.3 * i for i in range(15)]
    path = write_video(tmp_path / "vfr.mp4", grey_frames(30), fps=10, timestamps_s=times)
    info = probe(path)
    assert info.variable_frame_rate and info.n_frames == 30
    assert info.duration_s == pytest.approx(5.7, abs=0.25)

    # Sampling by time, not by index: at 3.0 s the frame shown is the one that started at 3.0 s (index 20).
    assert frame_index(sample_frames(path, fps=1, start_s=2.5, end_s=3.5)).tolist() == [20]

    proxy = make_proxy(path, tmp_path / "vfr_proxy.mp4")
    out = probe(proxy.path)
    assert not out.variable_frame_rate and out.duration_s == pytest.approx(info.duration_s, abs=0.3)
    decoded = frame_index(sample_frames(proxy.path, fps=out.fps))
    # Each output instant shows the source frame on screen at that instant.
    expected = [int(np.searchsorted(times, t + 1e-6, side="right") - 1)
                for t in (np.arange(len(decoded)) + 0.5) / out.fps]
    assert np.abs(decoded - np.array(expected)).max() <= 1


def test_proxy_of_odd_sized_vp9_is_even_h264_with_faststart(tmp_path: Path) -> None:
    source = write_video(tmp_path / "odd.webm", grey_frames(20, height=97, width=161), fps=10, codec="libvpx-vp9")
    assert (probe(source).width, probe(source).height) == (161, 97)  # VP9 keeps the odd size
    proxy = make_proxy(source, tmp_path / "odd_proxy.mp4")
    assert (proxy.width, proxy.height) == (160, 96) and proxy.n_frames == 20
    with av.open(str(proxy.path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
    data = proxy.path.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat"), "+faststart puts the index before the media data"
    assert frame_index(sample_frames(proxy.path, num_frames=4)).tolist() == [2, 7, 12, 17]


def test_proxy_cut_to_the_frame_and_scaled(tmp_path: Path) -> None:
    source = write_video(tmp_path / "src.mp4", grey_frames(30, height=240, width=320), fps=10)
    proxy = make_proxy(source, tmp_path / "cut.mp4", max_height=120, start_s=1.0, end_s=2.5)
    assert (proxy.width, proxy.height, proxy.n_frames) == (160, 120, 15)
    decoded = sample_frames(proxy.path, fps=10)
    assert frame_index(decoded).tolist() == list(range(10, 25))
    assert proxy.decode_s > 0 and proxy.encode_s > 0


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 4000), st.integers(2, 4000), st.integers(16, 2160))
def test_proxy_size_is_even_bounded_and_keeps_aspect(width: int, height: int, max_height: int) -> None:
    out_width, out_height = proxy_size(width, height, max_height)
    assert out_width % 2 == 0 and out_height % 2 == 0
    assert out_height <= max(2, min(height, max_height))
    assert abs(out_width / out_height - width / height) <= 2.0 / out_height + 1e-9 + (width / height) / out_height


def test_thumbnail_shows_the_frame_at_the_time(tmp_path: Path) -> None:
    source = write_video(tmp_path / "src.mp4", grey_frames(30, height=240, width=640), fps=10)
    thumb = make_thumbnail(source, tmp_path / "thumbs" / "t.jpg", at_s=2.05)
    image = cv2.imread(str(thumb))
    assert image.shape == (120, 320, 3)
    assert frame_index(image[None])[0] == 20


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b"this is not a video\n" * 40, "cannot decode as video"),
    ],
)
def test_undecodable_files_are_clear_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(VideoError, match=message):
        probe(path)


def test_truncated_file_with_index_in_front_is_caught(tmp_path: Path) -> None:
    # With +faststart the index survives a cut, so the file opens: only decoding the end shows the damage.
    good = write_video(tmp_path / "good.mp4", [np.random.default_rng(0).integers(0, 255, (64, 96, 3), np.uint8)
                                               for _ in range(30)], fps=10)
    data = good.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError, match="truncated|cannot decode"):
        probe(cut)
    with pytest.raises(VideoError, match="cannot read file"):
        probe(tmp_path / "missing.mp4")


def test_opening_a_video_first_leaves_png_decoding_working(tmp_path: Path) -> None:
    """decord bundles an old zlib: loaded before OpenCV it breaks cv2's PNG decoding, which the feature pictures
    need. A fresh process, since this one has loaded OpenCV already."""
    import subprocess
    import sys

    frames = [np.full((32, 48, 3), 100, np.uint8) for _ in range(4)]
    write_video(tmp_path / "a.mp4", frames, fps=10)
    check = ("import sys; from curation.media.video import probe; probe(sys.argv[1]); import cv2, numpy as np; "
             "ok, png = cv2.imencode('.png', np.zeros((8, 8), np.uint8)); "
             "sys.exit(0 if cv2.imdecode(png, cv2.IMREAD_UNCHANGED) is not None else 3)")
    result = subprocess.run([sys.executable, "-c", check, str(tmp_path / "a.mp4")], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parent.parent, timeout=120)
    assert result.returncode == 0, result.stderr[-1000:]
