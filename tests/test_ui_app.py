"""The browser app's pages driven by Streamlit's AppTest (no browser): log in, the rubric-generated form with its
live preview and field-named errors, Submit / Skip / Unclear with times, revisions, roles, review, dashboard,
session expiry; the key script and the server's local-only settings."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from curation.media.video import write_video
from curation.records.annotations import add_annotation, current_annotations
from curation.records.store import Clip, Event, Project, Review
from curation.records.users import add_user
from curation.team.assign import assign

APP = str(Path(__file__).resolve().parent.parent / "annotate_ui" / "app.py")
RUBRICS = Path(__file__).resolve().parent.parent / "rubrics"
FIELDS = {"event": "TAILGATING", "persons": 2, "badge_events": 1, "door": 14, "time": "02:14"}


def make_project(path: Path, rubric: str = "surveillance_alert", n_clips: int = 4) -> Project:
    """Clips with tiny real H.264 proxies, four people, every clip assigned to ana and ben."""
    project = Project.init(path, RUBRICS / f"{rubric}.yaml")
    rng = np.random.default_rng(0)
    with project.write() as session:
        for i in range(n_clips):
            proxy = f"media/proxies/p{i}.mp4"
            write_video(path / proxy, [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(6)], fps=6)
            session.add(Clip(root="/f", path=f"cam/c{i}.mp4", sha256=f"{i:064x}", source_sha256=f"{i:064x}",
                             duration_s=1, fps=6, width=32, height=32, n_frames=6, group_key="cam", proxy_path=proxy))
    for name, role in [("ana", "annotator"), ("ben", "annotator"), ("rev", "reviewer"), ("lead", "lead")]:
        add_user(project, name, role, f"password-{name}")
    assign(project, ["ana", "ben"], overlap=1.0, per_clip=2)
    return project


@pytest.fixture
def surveillance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    project = make_project(tmp_path / "p")
    monkeypatch.setenv("CLIPTUNE_PROJECT", str(project.path))
    return project


def log_in(name: str, password: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30).run()
    by_label = {t.label: t for t in at.text_input}
    by_label["Name"].input(name)
    by_label["Password"].input(password or f"password-{name}")
    at.button[0].click().run()
    assert not at.exception, at.exception
    return at


def widget(elements, label: str):
    matches = [e for e in elements if e.label == label]
    assert len(matches) == 1, [e.label for e in elements]
    return matches[0]


def press(at: AppTest, label: str) -> AppTest:
    widget(at.button, label).click().run()
    assert not at.exception, at.exception
    return at


def fill(at: AppTest, fields: dict) -> AppTest:
    widget(at.radio, "event").set_value(fields["event"])
    for name in ("persons", "badge_events", "door"):
        widget(at.number_input, name).set_value(fields[name])
    widget(at.text_input, "time").input(fields["time"])
    return at.run()


def clip_heading(at: AppTest) -> int:
    title = next(m.value for m in at.markdown if m.value.startswith("#### Clip "))
    return int(title.split()[2])


def test_login_checks_name_and_password(surveillance: Project) -> None:
    at = log_in("ana", "wrong-password")
    assert [e.value for e in at.error] == ["Name or password is wrong."]
    assert not [b for b in at.button if b.label == "Submit"]
    at = log_in("ana")
    assert [b.label for b in at.button if b.label in ("Submit", "Skip", "Unclear")] == ["Submit", "Skip", "Unclear"]
    with surveillance.session() as session:
        actions = [(e.action, e.user_name) for e in session.scalars(select(Event).where(Event.action.like("login%")))]
    assert actions == [("login_failed", "ana"), ("login", "ana")]


def test_form_is_generated_from_the_rubric_with_a_live_preview(surveillance: Project) -> None:
    at = log_in("ana")
    assert [r.label for r in at.radio] == ["event"]
    assert widget(at.radio, "event").options == ["1 · NO_ACTIVITY", "2 · NORMAL_ENTRY", "3 · TAILGATING",
                                                 "4 · INTRUSION"]
    assert [n.label for n in at.number_input] == ["persons", "badge_events", "door"]
    assert [t.label for t in at.text_input] == ["time", "Comment"]
    assert any("Still to fill: **event**, **persons**, **badge_events**, **door**, **time**" == c.value
               for c in at.caption)
    fill(at, {**FIELDS, "time": "25:99"})
    assert [e.value for e in at.error] == ["**time**: '25:99' is out of range for hh:mm"]
    assert not at.code
    widget(at.text_input, "time").input("02:14").run()
    assert [c.value for c in at.code] == ["TAILGATING — 2 persons, 1 badge event, Door 14, 02:14"]
    assert not at.error


def test_the_form_follows_any_rubric(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = make_project(tmp_path / "tele", rubric="telemedicine_note", n_clips=1)
    monkeypatch.setenv("CLIPTUNE_PROJECT", str(project.path))
    at = log_in("ana")
    assert [r.label for r in at.radio] == ["visit_type", "urgency"]
    assert [t.label for t in at.text_area] == ["history", "observations", "plan"]
    assert [t.label for t in at.text_input] == ["complaint", "Comment"]
    assert [n.label for n in at.number_input] == ["pain_score"]
    widget(at.radio, "visit_type").set_value("follow-up")
    widget(at.radio, "urgency").set_value("routine")
    widget(at.text_input, "complaint").input("Review of blood pressure")
    for name in ("history", "observations", "plan"):
        widget(at.text_area, name).input(f"{name} text")
    at.run()
    assert at.code[0].value.startswith("Visit: follow-up\nComplaint: Review of blood pressure\n")
    assert at.code[0].value.endswith("Urgency: routine\nPain score: none")  # optional and empty
    press(at, "Submit")
    (row,) = current_annotations(project, user="ana")
    assert row.fields["pain_score"] is None and row.fields["plan"] == "plan text"


def test_submit_stores_the_answer_with_its_time_and_moves_on(surveillance: Project) -> None:
    at = log_in("ana")
    first = clip_heading(at)
    press(at, "Submit")  # nothing filled in: refused, every field named, nothing stored
    assert {e.value.split("**")[1] for e in at.error} == {"event", "persons", "badge_events", "door", "time"}
    assert current_annotations(surveillance, user="ana") == []
    fill(at, FIELDS)
    time.sleep(0.3)
    press(at, "Submit")
    (row,) = current_annotations(surveillance, user="ana")
    assert (row.clip_id, row.status, row.source, row.fields) == (first, "submitted", "ui", FIELDS)
    assert 0.3 <= row.seconds_spent < 30
    assert clip_heading(at) != first
    assert at.toast[0].value.startswith(f"Clip {first}: submitted")
    assert any("**1 / 4** assigned clips done" == p.text for p in at.get("progress"))


def test_unclear_needs_a_comment_and_skip_moves_on(surveillance: Project) -> None:
    at = log_in("ana")
    first = clip_heading(at)
    press(at, "Unclear")
    assert [e.value for e in at.error] == ["**Comment**: Unclear needs a comment that says what is unclear"]
    assert current_annotations(surveillance, user="ana") == []
    widget(at.text_input, "Comment").input("the door is out of frame")
    press(at, "Unclear")
    second = clip_heading(at)
    press(at, "Skip")
    rows = {r.clip_id: r for r in current_annotations(surveillance, user="ana")}
    assert rows[first].status == "unclear" and rows[first].comment == "the door is out of frame"
    assert rows[second].status == "skipped" and rows[second].fields is None
    assert clip_heading(at) not in (first, second)


def test_a_revision_adds_a_version_and_keeps_the_old_one(surveillance: Project) -> None:
    at = log_in("ana")
    first = clip_heading(at)
    fill(at, FIELDS)
    press(at, "Submit")
    at.selectbox(key="revise_pick").select(first).run()
    press(at, "Revise")
    assert clip_heading(at) == first
    assert widget(at.number_input, "persons").value == 2  # the earlier answer, ready to change
    widget(at.number_input, "persons").set_value(3).run()
    press(at, "Submit")
    versions = current_annotations(surveillance, clip_ids=[first], user="ana", history=True)
    assert [v.fields["persons"] for v in versions] == [2, 3]
    assert clip_heading(at) != first  # back to the next clip to label


def test_an_annotator_has_no_review_page_and_sees_only_her_answers(surveillance: Project) -> None:
    add_annotation(surveillance, 1, "ben", fields={**FIELDS, "door": 4321})
    at = log_in("ana")
    with pytest.raises(ValueError, match=r"Known pages: \['[^']*views/label.py'\]"):
        at.switch_page("views/review.py")  # her navigation holds the label page only
    assert clip_heading(at) == 1  # the clip ben answered: his answer must not show
    assert "4321" not in repr(at._tree) and "ben" not in repr(at._tree)
    fill(at, FIELDS)
    press(at, "Submit")
    (mine,) = [d.value for d in at.dataframe]  # "My answers": hers only
    assert list(mine["clip"]) == [1] and "4321" not in " ".join(mine["output"])
    # The page itself checks the role too, whoever runs it.
    page = AppTest.from_file(str(Path(APP).parent / "views" / "review.py"), default_timeout=30)
    page.session_state["_cliptune_login"] = at.session_state["_cliptune_login"]
    page.run()
    assert page.error[0].value.startswith("This page is for reviewers and leads")
    assert not page.radio


def test_a_reviewer_adjudicates_with_a_reason(surveillance: Project) -> None:
    add_annotation(surveillance, 1, "ana", fields=FIELDS)
    chosen = add_annotation(surveillance, 1, "ben", fields={**FIELDS, "persons": 3})
    add_annotation(surveillance, 2, "ana", fields=FIELDS)
    add_annotation(surveillance, 2, "ben", status="unclear", comment="too dark to count")
    at = log_in("rev")
    at.switch_page("views/review.py").run()
    assert at.title[0].value == "Review"
    at.selectbox(key="review_clip").select(1).run()
    assert "Answers differ on :orange-background[**persons**]" in [m.value for m in at.markdown]
    widget(at.radio, "Gold answer").set_value(chosen).run()
    press(at, "Save gold answer")
    assert at.error[0].value == "Reason: say why this is the gold answer"
    with surveillance.session() as session:
        assert session.scalars(select(Review)).first() is None
    widget(at.text_input, "Reason").input("three people on frame 40").run()
    press(at, "Save gold answer")
    with surveillance.session() as session:
        review = session.scalars(select(Review)).one()
    assert (review.clip_id, review.annotation_id, review.fields["persons"]) == (1, chosen, 3)
    assert clip_heading(at) == 2  # the queue moves on by itself
    assert "comment: too dark to count" in [c.value for c in at.caption]


def test_a_reviewer_can_edit_the_gold_answer(surveillance: Project) -> None:
    add_annotation(surveillance, 2, "ana", fields=FIELDS)
    add_annotation(surveillance, 2, "ben", fields={**FIELDS, "door": 41})
    at = log_in("rev")
    at.switch_page("views/review.py").run()
    widget(at.radio, "Gold answer").set_value(-1).run()  # "Edit an answer": the form, filled from ana's answer
    assert widget(at.number_input, "door").value == 14
    widget(at.number_input, "door").set_value(44)
    widget(at.text_input, "Reason").input("the door reads 44 in frame 3")
    at.run()
    assert at.code[0].value == "TAILGATING — 2 persons, 1 badge event, Door 44, 02:14"
    press(at, "Save gold answer")
    with surveillance.session() as session:
        review = session.scalars(select(Review)).one()
    assert review.annotation_id is None and review.fields == {**FIELDS, "door": 44}


def test_a_review_typed_while_the_session_expired_is_kept(surveillance: Project, monkeypatch) -> None:
    monkeypatch.setenv("CLIPTUNE_SESSION_IDLE_S", "5")
    add_annotation(surveillance, 2, "ana", fields=FIELDS)
    add_annotation(surveillance, 2, "ben", fields={**FIELDS, "door": 41})
    at = log_in("rev")
    at.switch_page("views/review.py").run()
    widget(at.radio, "Gold answer").set_value(-1).run()
    widget(at.number_input, "door").set_value(44)
    widget(at.text_input, "Reason").input("the door reads 44 in frame 3")
    at.run()
    time.sleep(5.5)
    press(at, "Save gold answer")  # too late: nothing is stored in his name
    with surveillance.session() as session:
        assert session.scalars(select(Review)).first() is None
    by_label = {t.label: t for t in at.text_input}
    by_label["Name"].input("rev")
    by_label["Password"].input("password-rev")
    at.button[0].click().run()
    assert any("session expired before this gold answer was saved" in w.value for w in at.warning)
    assert widget(at.number_input, "door").value == 44
    assert widget(at.text_input, "Reason").value == "the door reads 44 in frame 3"
    press(at, "Save gold answer")
    with surveillance.session() as session:
        review = session.scalars(select(Review)).one()
    assert review.fields == {**FIELDS, "door": 44} and review.reason == "the door reads 44 in frame 3"


def test_the_lead_dashboard_shows_every_section(surveillance: Project) -> None:
    for user, persons, seconds in (("ana", 2, 40.0), ("ben", 3, 60.0)):
        add_annotation(surveillance, 1, user, fields={**FIELDS, "persons": persons}, seconds_spent=seconds)
        add_annotation(surveillance, 2, user, fields=FIELDS, seconds_spent=seconds)
    at = log_in("lead")
    at.switch_page("views/dashboard.py").run()
    assert not at.exception, at.exception
    assert [s.value for s in at.subheader] == ["Progress per annotator", "Agreement per field", "Label distribution",
                                               "Budget forecast"]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Answers"] == "4" and metrics["Median s / clip"] == "50.0"
    progress = at.dataframe[0].value
    assert list(progress["annotator"]) == ["ana", "ben"] and list(progress["submitted"]) == [2, 2]
    agreement = at.dataframe[1].value
    assert list(agreement["field"]) == ["event", "persons", "badge_events", "door", "time"]
    assert {"value", "ci low", "ci high"} <= set(agreement.columns)


def test_a_session_expires_when_idle(surveillance: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    # Seconds, not fractions: a cold first AppTest run on a fresh CI machine takes over half a second.
    monkeypatch.setenv("CLIPTUNE_SESSION_IDLE_S", "5")
    at = log_in("ana")
    assert widget(at.button, "Submit")
    at.run()
    assert widget(at.button, "Submit")  # activity keeps it alive
    fill(at, FIELDS)
    time.sleep(5.5)
    press(at, "Submit")  # too late: nothing is stored in her name
    assert current_annotations(surveillance) == []
    assert not [b for b in at.button if b.label == "Submit"]
    assert at.info[0].value.startswith("Your session expired")
    # ... but what she typed is not lost: after logging in again it is filled in, and Submit stores it.
    by_label = {t.label: t for t in at.text_input}
    by_label["Name"].input("ana")
    by_label["Password"].input("password-ana")
    at.button[0].click().run()
    assert any("What you typed is filled in again" in w.value for w in at.warning)
    press(at, "Submit")
    (row,) = current_annotations(surveillance, user="ana")
    assert row.fields == FIELDS


def test_log_out_ends_the_session(surveillance: Project) -> None:
    at = log_in("ana")
    press(at, "Log out")
    assert [t.label for t in at.text_input] == ["Name", "Password"]
    assert "_cliptune_login" not in at.session_state


def test_key_script_survives_the_html_sanitiser() -> None:
    from annotate_ui.player import KEYS_SCRIPT, RATES

    body = KEYS_SCRIPT.removeprefix("<script>").removesuffix("</script>")
    # DOMPurify drops a whole script whose text contains "<" + letter, "/" or "!" (checked in Chromium).
    assert not re.search(r"<[A-Za-z/!]", body)
    assert RATES[0] == 0.25 and RATES[-1] == 4 and list(RATES) == sorted(RATES)


def test_the_server_stays_local() -> None:
    from annotate_ui.server import command

    line = command("/tmp/p", port=8600)
    assert line[1:5] == ["-m", "streamlit", "run", str(Path(APP).parent / "asgi.py")]
    options = dict(zip(line[5:-2:2], line[6:-2:2], strict=True))
    assert options["--server.address"] == "127.0.0.1" and options["--server.port"] == "8600"
    assert options["--browser.gatherUsageStats"] == "false" and options["--server.headless"] == "true"
    assert options["--server.fileWatcherType"] == "none"
    assert line[-2:] == ["--", "/tmp/p"]
