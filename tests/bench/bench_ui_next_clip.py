"""Benchmark: time from Submit to the next clip playable, in Debian's Chromium, against the real app.

For each of 20 clips the fields are filled in (not timed), then Submit is pressed and the clock runs until a
<video> with a new source reports readyState >= 3 (HAVE_FUTURE_DATA: it can play). Median, p90 and max are
reported, with the same measurement for the baseline a plain web page would give: reloading the page until
its clip is playable. Two proxy sets: the synthetic sample as ingested (160×120), and 854×480 ten-second H.264
proxies, the size `cliptune ingest` makes by default from HD footage.

    python tests/bench/bench_ui_next_clip.py [--clips 20] [--sets sample,480p]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from annotate_ui.server import start  # noqa: E402
from curation.records.store import Clip, Project  # noqa: E402
from curation.records.users import add_user  # noqa: E402
from curation.team.assign import assign  # noqa: E402

READY = '[data-testid="stApp"][data-test-connection-state="CONNECTED"][data-test-script-state="notRunning"]'
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--mute-audio", "--autoplay-policy=no-user-gesture-required"]
SUBMIT_TO_PLAYABLE = """async () => {
  const old = document.querySelector('#ct-video');
  const oldSrc = old ? old.src : null;
  const button = [...document.querySelectorAll('[data-testid="stMain"] button')]
    .find((b) => b.innerText.trim() === 'Submit');
  return await new Promise((resolve) => {
    let done = false;
    const check = () => {
      const v = document.querySelector('#ct-video');
      if (!done && v && v.src !== oldSrc && v.readyState >= 3) { done = true; resolve(performance.now() - t0); }
    };
    for (const type of ['loadeddata', 'canplay', 'canplaythrough', 'progress'])
      document.addEventListener(type, check, true);
    const timer = setInterval(() => { check(); if (done) clearInterval(timer); }, 2);
    const t0 = performance.now();
    button.click();
  });
}"""
PLAYABLE_SINCE_NAVIGATION = """() => new Promise((resolve) => {
  const timer = setInterval(() => {
    const v = document.querySelector('#ct-video');
    if (v && v.readyState >= 3) { clearInterval(timer); resolve(performance.now()); }
  }, 2);
})"""


def sample_project(folder: Path, n_clips: int) -> Project:
    from curation.media.ingest import ingest
    from curation.media.synthetic import generate_sample

    generate_sample(folder / "sample", n_clips=n_clips, random_state=11)
    project = Project.init(folder / "project", REPO / "rubrics" / "surveillance_alert.yaml")
    ingest(project, [folder / "sample" / "clips"], metadata=folder / "sample" / "cameras.csv", group_by="camera")
    return project


def hd_project(folder: Path, n_clips: int, seconds: float = 10.0, fps: int = 15) -> Project:
    """854×480 proxies with moving content and sensor-like noise, each different (distinct media URLs)."""
    from curation.media.video import write_video

    project = Project.init(folder / "project", REPO / "rubrics" / "surveillance_alert.yaml")
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:480, 0:854]
    background = (np.stack([xs / 854, ys / 480, 0.5 + 0 * xs], axis=-1) * 180).astype(np.uint8)
    with project.write() as session:
        for i in range(n_clips):
            frames = []
            for t in range(int(seconds * fps)):
                frame = background.copy()
                x = (40 * i + 12 * t) % 780
                frame[180:400, x:x + 70] = (30 + 9 * i) % 255
                frame = np.clip(frame + rng.integers(-12, 12, frame.shape), 0, 255).astype(np.uint8)
                frames.append(frame)
            proxy = f"media/proxies/hd{i}.mp4"
            write_video(project.path / proxy, frames, fps=fps)
            session.add(Clip(root="/bench", path=f"hd/{i}.mp4", sha256=f"{i:064x}", source_sha256=f"{i:064x}",
                             duration_s=seconds, fps=fps, width=854, height=480, n_frames=len(frames),
                             group_key="hd", proxy_path=proxy))
    return project


def settle(page) -> None:
    page.wait_for_selector(READY)
    page.wait_for_timeout(150)
    page.wait_for_selector(READY)


def measure(project: Project, n_clips: int, n_reloads: int = 5) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    add_user(project, "ana", "annotator", "password-ana")
    assign(project, ["ana"])
    process, url = start(project.path)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(url)
            page.get_by_role("textbox", name="Name").fill("ana")
            page.get_by_role("textbox", name="Password").fill("password-ana")
            page.keyboard.press("Enter")
            page.locator('#ct-video').wait_for()
            settle(page)
            reloads = []
            for _ in range(n_reloads):  # baseline: the whole page again, until its clip can play
                page.reload()
                reloads.append(page.evaluate(PLAYABLE_SINCE_NAVIGATION))
                settle(page)
            submits = []
            for index in range(n_clips):
                page.locator('[data-testid="stMain"] h4').first.click()
                page.keyboard.press(str(1 + index % 4))
                for value in ("1", "1", str(10 + index), "09:30"):
                    page.keyboard.press("Tab")
                    page.keyboard.type(value)
                page.keyboard.press("Tab")
                settle(page)
                submits.append(page.evaluate(SUBMIT_TO_PLAYABLE))
                settle(page)
            browser.close()
    finally:
        process.terminate()
        process.wait(10)
    return {"submit": submits, "reload": reloads}


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
    return f"median {statistics.median(values):6.0f} ms  p90 {p90:6.0f} ms  max {max(values):6.0f} ms (n={len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--sets", default="sample,480p")
    args = parser.parse_args()
    for name in args.sets.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            tic = time.perf_counter()
            make = sample_project if name == "sample" else hd_project
            project = make(Path(tmp), args.clips + 1)
            proxies = [p.stat().st_size for p in (project.path / "media" / "proxies").glob("*.mp4")]
            print(f"== {name}: {len(proxies)} proxies, median {statistics.median(proxies) / 1e3:.0f} kB "
                  f"(built in {time.perf_counter() - tic:.0f} s)")
            result = measure(project, args.clips)
            submit, reload = statistics.median(result["submit"]), statistics.median(result["reload"])
            print(f"Submit -> next clip playable: {summary(result['submit'])}   target < 300 ms")
            print(f"baseline, page reload -> playable: {summary(result['reload'])}")
            print(f"ratio submit / reload (medians): {submit / reload:.2f}")


if __name__ == "__main__":
    main()
