"""A person labels a pushed clip in Label Studio's own page (Debian's Chromium, Playwright), and pull gets it.

This is the check that the generated config works where it matters: the video plays from Label Studio's
local-files serving, its frame counter follows the clip's real frame rate, and the controls the rubric made
produce an answer that comes back as valid rubric fields, with the time the person spent.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import label_studio_server
import pytest
from conftest import RUBRICS

from annotate_ui.label_studio.bridge import linked_project, pull, push
from curation.media.ingest import ingest
from curation.records.annotations import current_annotations
from curation.records.store import Clip, Project

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking", "--mute-audio"]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed (make browser)"),
    pytest.mark.filterwarnings("ignore:The `parse_obj` method is deprecated"),
]
label_studio = label_studio_server.label_studio
label_studio_template = label_studio_server.label_studio_template


def test_an_annotator_labels_a_clip_in_label_studio_and_pull_brings_it_back(label_studio, tmp_path: Path):
    from playwright.sync_api import sync_playwright

    from curation.media.synthetic import generate_sample

    generate_sample(tmp_path / "sample", n_clips=2, random_state=1)  # CAM-2_0001: variable frame rate, ~10.15 fps
    project = Project.init(tmp_path / "lobby", RUBRICS / "surveillance_alert.yaml")
    assert ingest(project, [tmp_path / "sample" / "clips" / "CAM-2"], proxy_height=96, workers=1).added == 1
    with project.session() as session:
        clip = session.query(Clip).one()
    server = label_studio(document_root=project.media_dir)
    report = push(project, url=server.url, api_key=server.tokens["admin"])
    task = next(iter(linked_project(project)["tasks"]))
    email, password = label_studio_server.USERS["annotator"]

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            page.goto(f"{server.url}/user/login/")
            page.fill("input[name=email]", email)
            page.fill("input[name=password]", password)
            page.click("button[type=submit]")
            page.wait_for_load_state("networkidle")
            page.goto(f"{server.url}/projects/{report.project_id}/data?task={task}")
            page.wait_for_function("() => { const v = document.querySelector('video'); return v && v.readyState >= 2 }",
                                   timeout=60_000)
            video = page.evaluate("() => { const v = document.querySelector('video'); "
                                  "return {src: v.currentSrc, width: v.videoWidth} }")
            assert video["src"].endswith(f"/data/local-files/?d={clip.proxy_path.removeprefix('media/')}")
            assert video["width"] > 0  # decoded, not just linked
            counter = page.locator("text=/^ ?of \\d+$/").first.inner_text()
            frames = int(re.search(r"\d+", counter).group())
            # The counter follows the task's frame rate (the clip's), not Label Studio's default of 24 fps.
            assert abs(frames - clip.n_frames) <= 1 and abs(frames - round(clip.duration_s * 24)) > 5
            for name in project.rubric.field_map:
                assert page.get_by_text(re.compile(rf"^{name}\b")).count() >= 1  # the field's help header
            page.locator("input[name=TAILGATING]").check()
            page.fill("input[name=persons]", "2")
            page.fill("input[name=badge_events]", "1")
            page.fill("input[name=door]", "14")
            page.fill("[name=time]", "02:14")
            page.press("[name=time]", "Enter")
            page.get_by_role("button", name="Submit").click()
            _wait_for_annotation(server, task)
        finally:
            browser.close()

    pulled = pull(project, api_key=server.tokens["admin"])
    assert (pulled.imported, pulled.failed, pulled.users_created) == (1, [], [email])
    answer = current_annotations(project)[0]
    assert answer.fields == {"event": "TAILGATING", "persons": 2, "badge_events": 1, "door": 14, "time": "02:14"}
    assert answer.output_text == "TAILGATING — 2 persons, 1 badge event, Door 14, 02:14"
    assert answer.user == email and answer.seconds_spent > 0  # Label Studio's lead time of a real session


def _wait_for_annotation(server, task: int, timeout_s: float = 20) -> None:
    from label_studio_sdk import LabelStudio

    client = LabelStudio(base_url=server.url, api_key=server.tokens["admin"])
    deadline = time.monotonic() + timeout_s
    while not client.annotations.list(id=task):
        assert time.monotonic() < deadline, "the submitted annotation never reached Label Studio"
        time.sleep(0.2)
