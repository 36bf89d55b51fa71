"""The browser app in Debian's Chromium, driven by Playwright, against the real app (``streamlit run`` on 127.0.0.1).

An annotator labels three clips with the keyboard only and the rows land in the store with their times; the video
element really plays and the keys drive it; an annotator can open neither the review page nor anyone else's
answer; a reviewer resolves a disagreement; the lead's dashboard shows its sections. Each test saves a screenshot
of its page to artifacts/screenshots/.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from curation.media.ingest import ingest
from curation.records.annotations import add_annotation, current_annotations
from curation.records.store import Project, Review
from curation.records.users import add_user
from curation.review.resolve import resolve
from curation.team.assign import assign, assigned_clips

CHROMIUM = "/usr/bin/chromium"
RUBRIC = Path(__file__).resolve().parent.parent / "rubrics" / "surveillance_alert.yaml"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed (make browser)"),
]
READY = '[data-testid="stApp"][data-test-connection-state="CONNECTED"][data-test-script-state="notRunning"]'
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--mute-audio", "--autoplay-policy=no-user-gesture-required"]
# Ben's answer on a clip ana also labels: no trace of it may reach ana's browser.
BEN_SECRET = {"event": "INTRUSION", "persons": 17, "badge_events": 9, "door": 4321, "time": "23:59"}
ANA_TYPED = [("3", "2", "1", "14", "02:14"), ("1", "0", "0", "3", "13:05"), ("2", "1", "1", "7", "08:30")]
CHOICES = ["NO_ACTIVITY", "NORMAL_ENTRY", "TAILGATING", "INTRUSION"]


@pytest.fixture(scope="module")
def app(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    from annotate_ui.server import start

    project = Project.init(tmp_path_factory.mktemp("ui") / "project", RUBRIC)
    ingest(project, [sample_dir / "clips"], metadata=sample_dir / "cameras.csv", group_by="camera",
           proxy_height=120, workers=1)
    for name, role in [("ana", "annotator"), ("ben", "annotator"), ("rev", "reviewer"), ("lead", "lead")]:
        add_user(project, name, role, f"password-{name}")
    assign(project, ["ana", "ben"], overlap=0.5, per_clip=2, random_state=0)
    shared = [c for c, _ in assigned_clips(project, "ana") if c in {c for c, _ in assigned_clips(project, "ben")}]
    # The first shared clip is ana's first clip to label (assignment order); ben has answered it already.
    first = assigned_clips(project, "ana")[0][0]
    add_annotation(project, first, "ben", fields=BEN_SECRET, seconds_spent=30, source="import")
    # A disagreement for the reviewer: ana and ben differ on persons.
    disputed = next(c for c in shared if c != first)
    base = {"event": "NORMAL_ENTRY", "badge_events": 1, "door": 14, "time": "10:00"}
    add_annotation(project, disputed, "ana", fields={**base, "persons": 1}, seconds_spent=20, source="import")
    add_annotation(project, disputed, "ben", fields={**base, "persons": 2}, seconds_spent=25, source="import")
    process, url = start(project.path, log=project.path / "app.log")
    try:
        yield {"project": project, "url": url, "first": first, "disputed": disputed}
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def browser(app: dict):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    # A fresh context per test: its own cookies, so logins do not leak between tests.
    context = browser.new_context(viewport={"width": 1400, "height": 1300})
    page = context.new_page()
    errors: list[str] = []
    outside: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("request", lambda request: None if request.url.startswith(("http://127.0.0.1:", "data:", "blob:"))
            else outside.append(request.url))
    page.set_default_timeout(20_000)
    yield page
    context.close()
    assert not errors, errors
    assert not outside, outside  # nothing leaves the machine: no fonts, icons or statistics from the internet


@pytest.fixture(scope="module")
def shots(artifacts_dir: Path) -> Path:
    folder = artifacts_dir / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def settle(page) -> None:
    page.wait_for_selector(READY)
    page.wait_for_timeout(250)  # a rerun may start right after an element changes: let it begin, then wait
    page.wait_for_selector(READY)


def log_in(page, url: str, name: str) -> None:
    page.goto(url)
    page.get_by_role("textbox", name="Name").wait_for()
    page.get_by_role("textbox", name="Name").focus()
    page.keyboard.type(name)
    page.keyboard.press("Tab")
    page.keyboard.type(f"password-{name}")
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Log out").wait_for()
    settle(page)


def heading(page) -> str:
    return page.locator("h4").first.inner_text()


def test_login_page_and_wrong_password(page, app: dict, shots: Path) -> None:
    page.goto(app["url"])
    page.get_by_role("textbox", name="Name").wait_for()
    settle(page)
    page.screenshot(path=shots / "login.png")
    page.get_by_role("textbox", name="Name").fill("ana")
    page.get_by_role("textbox", name="Password").fill("not-her-password")
    page.keyboard.press("Enter")
    page.get_by_text("Name or password is wrong.").wait_for()
    assert page.get_by_role("button", name="Log out").count() == 0


def test_annotator_labels_three_clips_with_the_keyboard_only(page, app: dict, shots: Path) -> None:
    project: Project = app["project"]
    log_in(page, app["url"], "ana")
    for button in ("Submit", "Skip", "Unclear"):
        assert page.get_by_role("button", name=button, exact=True).count() == 1
    for field in ("persons", "badge_events", "door", "time"):
        assert page.get_by_label(field, exact=True).count() == 1
    assert page.get_by_role("radiogroup", name="event").count() == 1
    labelled = []
    for index, (digit, *typed) in enumerate(ANA_TYPED):
        title = heading(page)
        labelled.append(int(title.split()[1]))
        text = page.locator("body").inner_text()
        assert "4321" not in text and not re.search(r"\bben\b", text)  # blind: ben's answer on `first` stays hidden
        page.keyboard.press(digit)
        for value in typed:
            page.keyboard.press("Tab")
            page.keyboard.type(value)
        if index == 0:
            page.keyboard.press("Tab")  # commit the time field: the preview shows the output text
            settle(page)
            assert page.locator('[data-testid="stCode"]').inner_text().strip() == (
                "TAILGATING — 2 persons, 1 badge event, Door 14, 02:14")
            page.screenshot(path=shots / "label.png")
            page.locator('[data-testid="stMain"] h4').first.click()  # focus off the fields, still keyboard from here
        page.keyboard.press("Control+Enter")
        page.wait_for_function("(old) => { const h = document.querySelector('h4'); return h && h.innerText !== old; }",
                               arg=title)
        settle(page)
    # The next clip plays at once, without a click.
    video = page.locator('#ct-video')
    page.wait_for_function("() => { const v = document.querySelector('#ct-video');"
                           " return v.readyState >= 3 && !v.paused && v.currentTime > 0.2; }")
    assert video.evaluate("v => v.src") not in ("", None)
    assert labelled[0] == app["first"]
    rows = {a.clip_id: a for a in current_annotations(project, user="ana") if a.source == "ui"}
    assert sorted(rows) == sorted(labelled)
    for clip_id, (digit, persons, badges, door, time_) in zip(labelled, ANA_TYPED, strict=True):
        row = rows[clip_id]
        assert row.status == "submitted"
        assert row.fields == {"event": CHOICES[int(digit) - 1], "persons": int(persons), "badge_events": int(badges),
                              "door": int(door), "time": time_}
        assert 0.3 < row.seconds_spent < 120  # measured from the clip shown to Submit
    progress = page.get_by_text("assigned clips done").inner_text()
    assert progress.startswith(f"{len(rows) + 1} / ")  # + the disputed clip ana answered before


def test_video_really_plays_and_keys_drive_it(page, app: dict, shots: Path) -> None:
    log_in(page, app["url"], "ben")
    video = page.locator('#ct-video')
    video.wait_for()
    page.wait_for_function("() => document.querySelector('#ct-video').readyState === 4")
    start = video.evaluate("v => v.currentTime")
    page.wait_for_timeout(800)
    state = video.evaluate("v => ({t: v.currentTime, paused: v.paused, rs: v.readyState, w: v.videoWidth,"
                           " muted: v.muted, loop: v.loop})")
    assert state["rs"] == 4 and not state["paused"] and state["w"] > 0 and state["muted"] and state["loop"]
    assert state["t"] > start, (start, state)
    # Loop: near the end it goes on from the start by itself.
    video.evaluate("v => { v.currentTime = v.duration - 0.15; }")
    page.wait_for_function("() => { const v = document.querySelector('#ct-video');"
                           " return !v.paused && v.currentTime > 0.05 && v.currentTime < 1; }")
    fps = float(page.locator("#ct-player").get_attribute("data-fps"))
    page.locator('[data-testid="stMain"] h4').first.click()  # focus on the page, not in a field
    page.keyboard.press("Space")
    assert video.evaluate("v => v.paused")
    frame = video.evaluate(f"v => Math.floor(v.currentTime * {fps} + 1e-6)")
    page.keyboard.press(".")
    page.wait_for_function(f"() => Math.floor(document.querySelector('#ct-video').currentTime * {fps}"
                           f" + 1e-6) === {frame + 1}")
    page.keyboard.press(",")
    page.keyboard.press(",")
    page.wait_for_function(f"() => Math.floor(document.querySelector('#ct-video').currentTime * {fps}"
                           f" + 1e-6) === {max(0, frame - 1)}")
    assert page.locator('[data-ct="frame"]').inner_text().startswith(f"{max(0, frame - 1) + 1} / ")
    for key, rate in (("]", 1.25), ("]", 1.5), ("[", 1.25), ("[", 1), ("[", 0.75)):
        page.keyboard.press(key)
        assert video.evaluate("v => v.playbackRate") == rate
    assert page.locator('[data-ct="speed"]').inner_text() == "0.75×"
    for _ in range(8):
        page.keyboard.press("[")
    assert video.evaluate("v => v.playbackRate") == 0.25  # the slowest; never below
    page.keyboard.press("Space")
    page.wait_for_timeout(300)
    assert not video.evaluate("v => v.paused")
    # A field committed mid-clip reruns the page; the clip must keep playing where it was, not restart.
    before = video.evaluate("v => v.currentTime")
    page.get_by_label("door", exact=True).fill("5")
    page.keyboard.press("Tab")
    settle(page)
    assert video.evaluate("v => v.readyState") == 4
    page.screenshot(path=shots / "label_playing.png")
    assert video.evaluate("v => v.playbackRate") == 0.25
    assert video.evaluate("v => v.currentTime") > before  # at 0.25×, a few-second clip cannot wrap meanwhile


def test_annotator_cannot_open_review_or_other_answers(page, app: dict, shots: Path) -> None:
    log_in(page, app["url"], "ana")
    nav = page.locator('[data-testid="stSidebar"]').inner_text()
    assert "Review" not in nav and "Dashboard" not in nav
    for path in ("review", "dashboard", "export"):
        page.goto(f"{app['url']}/{path}")  # a new page load: the login survives (cookie), the role still rules
        page.get_by_role("button", name="Log out").wait_for()
        page.get_by_role("dialog").get_by_text("Page not found").wait_for()
        settle(page)
        if path == "review":
            page.screenshot(path=shots / "annotator_denied_review.png")
        page.keyboard.press("Escape")
        page.get_by_role("dialog").wait_for(state="detached")
        main = page.locator('[data-testid="stMain"]').inner_text()
        assert "Gold answer" not in main and "Agreement per field" not in main and "Export" not in main.split("\n")
        assert page.get_by_role("button", name="Submit", exact=True).count() == 1  # she is on her label page
    page.get_by_text("My answers").click()
    settle(page)
    text = page.locator('[data-testid="stMain"]').inner_text()
    assert "4321" not in text and not re.search(r"\bben\b", text)


def test_reviewer_resolves_a_disagreement(page, app: dict, shots: Path) -> None:
    project: Project = app["project"]
    disputed = app["disputed"]
    log_in(page, app["url"], "rev")
    page.get_by_role("link", name="Review").click()
    page.get_by_role("heading", name="Review").wait_for()
    settle(page)
    page.get_by_role("combobox", name="Clip to review").click()
    page.get_by_role("option", name=f"clip {disputed} —").click()
    settle(page)
    assert f"Clip {disputed}" in heading(page)
    assert "Answers differ on persons" in page.locator('[data-testid="stMain"]').inner_text()
    page.screenshot(path=shots / "review.png")
    ben_answer = next(a for a in current_annotations(project, clip_ids=[disputed]) if a.user == "ben")
    page.get_by_role("radio", name=f"ben: {ben_answer.output_text}").check(force=True)
    settle(page)
    page.get_by_role("button", name="Save gold answer").click()
    page.get_by_text("Reason: say why").wait_for()  # a reason is required
    with project.session() as session:
        assert session.scalars(select(Review).where(Review.clip_id == disputed)).first() is None
    page.get_by_role("textbox", name="Reason").fill("two people pass at 00:03")
    page.keyboard.press("Tab")
    settle(page)
    page.get_by_role("button", name="Save gold answer").click()
    settle(page)
    with project.session() as session:
        review = session.scalars(select(Review).where(Review.clip_id == disputed)).one()
    assert review.annotation_id == ben_answer.id and review.reason == "two people pass at 00:03"
    gold = resolve(project).gold[disputed]
    assert gold.source == "adjudicated" and gold.fields["persons"] == 2


def test_lead_sees_dashboard_and_export(page, app: dict, shots: Path) -> None:
    log_in(page, app["url"], "lead")
    page.get_by_role("link", name="Dashboard").click()
    page.get_by_role("heading", name="Budget forecast").wait_for()
    settle(page)
    main = page.locator('[data-testid="stMain"]').inner_text()
    for section in ("Progress per annotator", "Agreement per field", "Label distribution", "Budget forecast"):
        assert section in main
    page.screenshot(path=shots / "dashboard.png")
    # Tables are drawn on a canvas; their cells are also in a hidden accessible table.
    cells = page.locator('[data-testid="stDataFrame"]').first.locator("td[role=gridcell]").all_text_contents()
    assert {"ana", "ben"} <= set(cells)
    page.get_by_role("link", name="Export").click()
    page.get_by_text("cliptune export").wait_for()
    settle(page)
    page.screenshot(path=shots / "export.png")


def test_clips_are_served_only_to_people_who_may_watch_them(browser, page, app: dict) -> None:
    project: Project = app["project"]
    ana_clips = [c for c, _ in assigned_clips(project, "ana")]
    not_hers = next(c for c in range(1, 13) if c not in ana_clips)
    stranger = browser.new_context()
    try:
        assert stranger.request.get(f"{app['url']}/clip/{ana_clips[0]}.mp4").status == 401  # not logged in
    finally:
        stranger.close()
    log_in(page, app["url"], "ana")
    whole = page.request.get(f"{app['url']}/clip/{ana_clips[0]}.mp4")
    assert whole.status == 200 and whole.headers["content-type"] == "video/mp4"
    assert whole.body()[4:8] == b"ftyp" and "max-age" in whole.headers["cache-control"]
    part = page.request.get(f"{app['url']}/clip/{ana_clips[0]}.mp4", headers={"Range": "bytes=0-99"})
    assert part.status == 206 and part.body() == whole.body()[:100]  # byte ranges: long clips stream
    assert page.request.get(f"{app['url']}/clip/{not_hers}.mp4").status == 404  # assigned to ben only
    assert page.request.get(f"{app['url']}/clip/999.mp4").status == 404
