"""Proxies really play in a browser: Debian's Chromium, driven by Playwright, loads them over HTTP from 127.0.0.1.

An MPEG-4 Part 2 file (the kind OpenCV writes) is the control: Chromium refuses it, so a test that passes here
shows the proxy plays, not merely that the page loaded.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from curation.media.synthetic import generate_sample
from curation.media.video import make_proxy, write_video

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed (make browser)"),
]

PLAY_SCRIPT = """async (src) => {
  const video = document.createElement('video');
  video.muted = true;
  document.body.appendChild(video);
  const outcome = new Promise((resolve) => {
    video.addEventListener('error', () => resolve({error: video.error ? video.error.code : -1}));
    video.addEventListener('timeupdate', () => {
      if (video.currentTime > 0.5) resolve({
        width: video.videoWidth, height: video.videoHeight, duration: video.duration, time: video.currentTime,
        frames: video.getVideoPlaybackQuality().totalVideoFrames,
      });
    });
  });
  video.src = src;
  video.play().catch(() => {});
  return await Promise.race([outcome, new Promise((r) => setTimeout(() => r({timeout: true}), 15000))]);
}"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    folder = tmp_path_factory.mktemp("served")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    (folder / "index.html").write_text("<!doctype html><html><body></body></html>")
    yield f"http://127.0.0.1:{server.server_address[1]}", folder
    server.shutdown()


@pytest.fixture(scope="module")
def page(served: tuple[str, Path]):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                  "--mute-audio", "--autoplay-policy=no-user-gesture-required"],
        )
        page = browser.new_page()
        page.goto(f"{served[0]}/index.html")
        yield page
        browser.close()


def play(page, url: str) -> dict:
    return page.evaluate(PLAY_SCRIPT, url)


def test_sample_proxies_play_in_chromium(page, served: tuple[str, Path], tmp_path: Path) -> None:
    base, folder = served
    sample = generate_sample(tmp_path / "sample", n_clips=4, random_state=3)  # one clip per camera
    sources = sorted(p for p in (sample.out_dir / "clips").rglob("*") if p.is_file())
    assert {p.suffix for p in sources} == {".mp4", ".webm"}
    for source in sources:  # VFR H.264, odd-sized VP9 WebM, plain H.264
        proxy = make_proxy(source, folder / f"{source.stem}_proxy.mp4")
        result = play(page, f"{base}/{proxy.path.name}")
        assert "error" not in result and "timeout" not in result, (source.name, result)
        assert (result["width"], result["height"]) == (proxy.width, proxy.height)
        assert result["duration"] == pytest.approx(proxy.n_frames / proxy.fps, abs=0.15)
        assert result["frames"] > 0


def test_control_mpeg4_part2_does_not_play(page, served: tuple[str, Path]) -> None:
    base, folder = served
    frames = [np.full((64, 96, 3), 20 * i, np.uint8) for i in range(12)]
    write_video(folder / "mpeg4.mp4", frames, fps=10, codec="mpeg4")
    result = play(page, f"{base}/mpeg4.mp4")
    assert result.get("error") == 4, result  # MEDIA_ERR_SRC_NOT_SUPPORTED
