"""The library behind the browser app (curation.team.progress): progress and pace, blind labelling views, review
sheets with the rubric's own tolerance, label distribution, the budget forecast; and the app's session store."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from curation.errors import CliptuneError
from curation.records.annotations import add_annotation, add_review
from curation.records.store import Clip, Project
from curation.records.users import add_user
from curation.team.assign import assign
from curation.team.progress import (
    annotator_progress,
    forecast,
    label_distribution,
    labelling_view,
    own_answers,
    review_sheet,
    throughput,
    user_progress,
)

FIELDS = {"event": "NORMAL_ENTRY", "persons": 1, "badge_events": 1, "door": 14, "time": "10:00"}


def add_clips(project: Project, n: int, start: int = 0) -> list[int]:
    with project.write() as session:
        clips = [Clip(root="/f", path=f"c{i}.mp4", sha256=f"{i:064x}", source_sha256=f"{i:064x}", duration_s=4,
                      fps=8, width=64, height=64, n_frames=32, group_key=f"g{i}", proxy_path=f"media/p{i}.mp4")
                 for i in range(start, start + n)]
        session.add_all(clips)
        session.flush()
        return [c.id for c in clips]


@pytest.fixture
def team(project: Project) -> Project:
    for name in ("ana", "ben"):
        add_user(project, name, "annotator", f"password-{name}")
    add_user(project, "rev", "reviewer", "password-rev")
    add_clips(project, 6)
    return project


def test_progress_counts_statuses_and_pace_over_labelling_acts(team: Project) -> None:
    assign(team, ["ana", "ben"], overlap=1.0, per_clip=2)
    clips = [c.id for c in labelling_order(team, "ana")]
    add_annotation(team, clips[0], "ana", fields=FIELDS, seconds_spent=30)
    add_annotation(team, clips[1], "ana", fields=FIELDS, seconds_spent=50)
    add_annotation(team, clips[2], "ana", status="skipped", seconds_spent=10)
    add_annotation(team, clips[3], "ana", status="unclear", comment="too dark", seconds_spent=20)
    add_annotation(team, clips[0], "ana", fields={**FIELDS, "persons": 2}, seconds_spent=40)  # a revision
    add_annotation(team, clips[0], "ben", fields=FIELDS, seconds_spent=90)

    ana = user_progress(team, "ana")
    assert (ana.assigned, ana.done, ana.submitted, ana.skipped, ana.unclear, ana.remaining) == (6, 4, 2, 1, 1, 2)
    assert ana.pace.acts == 5 and ana.pace.median_s == 30
    assert ana.pace.clips_per_hour == pytest.approx(3600 * 5 / 150, abs=0.05)
    assert [p.user for p in annotator_progress(team)] == ["ana", "ben"]  # rev has no work: not listed
    team_pace = throughput(team)
    assert team_pace["acts"] == 6 and team_pace["median_s"] == 35 and team_pace["hours"] == round(240 / 3600, 2)
    with pytest.raises(CliptuneError, match="no user 'zoe'"):
        user_progress(team, "zoe")


def labelling_order(project: Project, user: str):
    from curation.team.assign import assigned_clips
    from curation.team.progress import clip_view

    return [clip_view(project, clip_id) for clip_id, _ in assigned_clips(project, user)]


def test_labelling_view_is_blind_and_refuses_other_peoples_clips(team: Project) -> None:
    assign(team, ["ana", "ben"], overlap=1.0, per_clip=2)  # every clip to both
    first = labelling_view(team, "ana").clip.id
    add_annotation(team, first, "ben", fields={**FIELDS, "door": 4321}, seconds_spent=5)
    view = labelling_view(team, "ana")
    assert view.clip.id == first and view.previous is None  # ben's answer is not shown as ana's
    assert view.clip.proxy == (team.path / f"media/p{first - 1}.mp4").resolve()
    add_user(team, "cho", "annotator", "password-cho")
    (cho_only,) = add_clips(team, 1, start=6)
    assign(team, ["cho"])
    with pytest.raises(CliptuneError, match=f"clip {cho_only} is not assigned to ana"):
        labelling_view(team, "ana", cho_only)
    add_annotation(team, first, "ana", fields=FIELDS, seconds_spent=5)
    revising = labelling_view(team, "ana", first)
    assert revising.previous.user == "ana" and revising.previous.fields["door"] == 14
    assert [a.user for a in own_answers(team, "ana")] == ["ana"]
    assert revising.own_answers == own_answers(team, "ana")  # what the page lists, read with the view
    assert revising.upcoming not in (None, first) and revising.upcoming == labelling_view(team, "ana").clip.id


def test_labelling_view_says_when_nothing_is_left(team: Project) -> None:
    assert labelling_view(team, "ana").clip is None  # nothing assigned yet
    assign(team, ["ana"], overlap=0.0)
    for clip in labelling_order(team, "ana"):
        add_annotation(team, clip.id, "ana", status="skipped")
    view = labelling_view(team, "ana")
    assert view.clip is None and view.progress.done == view.progress.assigned == 6
    assert view.progress == user_progress(team, "ana") and len(view.own_answers) == 6


def test_review_sheet_highlights_fields_by_the_rubric_rule(team: Project) -> None:
    assign(team, ["ana", "ben"], overlap=1.0, per_clip=2)
    add_annotation(team, 1, "ana", fields=FIELDS)
    add_annotation(team, 1, "ben", fields={**FIELDS, "persons": 2, "time": "10:01"})  # time within 60 s tolerance
    add_user(team, "cho", "annotator", "password-cho")
    add_annotation(team, 1, "cho", status="unclear", comment="door hidden")
    sheet = review_sheet(team, 1)
    assert sheet.differing == ["persons"]
    assert [a.user for a in sheet.answers] == ["ana", "ben", "cho"]
    assert sheet.values["persons"] == {"ana": 1, "ben": 2}  # the unclear answer has no fields to compare
    add_annotation(team, 1, "ben", fields=FIELDS)  # ben revises: the sheet shows current answers only
    assert review_sheet(team, 1).differing == []


def test_label_distribution_counts_every_choice_and_gold(team: Project) -> None:
    assign(team, ["ana", "ben"], overlap=1.0, per_clip=2)
    add_annotation(team, 1, "ana", fields=FIELDS)
    add_annotation(team, 1, "ben", fields=FIELDS)
    add_annotation(team, 2, "ana", fields={**FIELDS, "event": "TAILGATING", "persons": 2})
    add_annotation(team, 2, "ben", fields=FIELDS)
    assert label_distribution(team) == {"event": {"NO_ACTIVITY": 0, "NORMAL_ENTRY": 3, "TAILGATING": 1,
                                                  "INTRUSION": 0}}
    assert label_distribution(team, gold=True)["event"]["NORMAL_ENTRY"] == 1  # clip 2 still needs review
    add_review(team, 2, "rev", reason="two went through", annotation_id=own_answers(team, "ana")[0].id)
    assert label_distribution(team, gold=True)["event"] == {"NO_ACTIVITY": 0, "NORMAL_ENTRY": 1, "TAILGATING": 1,
                                                           "INTRUSION": 0}


def test_forecast_flattens_the_budget_module(team: Project) -> None:
    from curation.team.budget import budget_forecast

    assign(team, ["ana", "ben"], overlap=0.0)
    nothing_measured = forecast(team, 100)
    assert nothing_measured["source"] == "curation.team.budget"
    assert nothing_measured["hours_total"] == budget_forecast(team, 100)["total_hours"]
    assert set(nothing_measured["parts"]) == {"label", "hold_out", "review"}
    assert nothing_measured["clips_per_hour"] == 20.0  # the field's rule of thumb until something is measured
    add_annotation(team, 1, "ana", fields=FIELDS, seconds_spent=36)
    measured = forecast(team, 100)
    assert measured["clips_per_hour"] == 100.0 and measured["pace_source"] != nothing_measured["pace_source"]
    assert measured["hours_remaining"] == budget_forecast(team, 100)["remaining_hours"]
    for bad in (0, -5, 2.5, True):
        with pytest.raises(CliptuneError, match="target"):
            forecast(team, bad)


def test_session_store_expires_idle_tokens() -> None:
    from annotate_ui.auth import SessionStore

    store = SessionStore()
    token = store.create("ana", now=1000.0)
    assert store.touch(token, idle_s=60, now=1050.0) == "ana"
    assert store.touch(token, idle_s=60, now=1100.0) == "ana"  # activity at 1050 moved the clock
    assert store.touch(token, idle_s=60, now=1161.0) is None  # 61 s idle: gone
    assert store.touch(token, idle_s=60, now=1162.0) is None
    assert store.touch("forged", idle_s=60) is None and store.touch(None, idle_s=60) is None
    other = store.create("ben")
    assert other != token
    store.drop(other)
    assert store.touch(other, idle_s=60) is None


def test_progress_module_needs_no_streamlit() -> None:
    # curation is the core library: importing it must not pull in the browser framework.
    import subprocess

    code = "import sys, curation.team.progress; sys.exit('streamlit' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent.parent).returncode == 0
