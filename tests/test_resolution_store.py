"""The stored resolution (curation.review.resolve): kept current incrementally, equal to resolving from scratch.

The reference is a from-scratch resolution: every clip's current answers and latest review read directly and put
through :func:`curation.review.consensus.resolve_clip`, with nothing stored.
"""

from __future__ import annotations

import random

import pytest
from sqlalchemy import delete, select
from test_resolve import add_clips

from curation.records.annotations import add_annotation, add_review, current_annotations
from curation.records.store import Project, Review, User
from curation.records.users import add_user
from curation.review.consensus import resolve_clip
from curation.review.derived import DerivedWatermark, write_rows
from curation.review.resolve import ClipResolution, refresh_resolution, resolution_summary, resolve, review_queue

EVENTS = ["NO_ACTIVITY", "NORMAL_ENTRY", "TAILGATING", "INTRUSION"]


def _random_fields(rng: random.Random) -> dict:
    return {"event": rng.choice(EVENTS[:2] if rng.random() < 0.8 else EVENTS), "persons": rng.choice([1, 1, 2]),
            "badge_events": 1, "door": 14, "time": rng.choice(["02:14", "02:14", "02:16"])}


def _reference(project: Project, policy: str) -> dict:
    """{clip id: (state, fields, source, reason, disagreement, rare)} resolved from scratch."""
    rubric = project.rubric
    answers: dict[int, list] = {}
    for record in current_annotations(project):
        answers.setdefault(record.clip_id, []).append(record)
    with project.session() as session:
        latest: dict[int, tuple] = {}
        for review, name in session.execute(select(Review, User.name).join(User, User.id == Review.reviewer_id)
                                            .order_by(Review.id)):
            latest[review.clip_id] = (review.fields, name)
    out = {}
    for clip_id in sorted(set(answers) | set(latest)):
        row = resolve_clip(rubric, policy, latest.get(clip_id), answers.get(clip_id, []))
        if row["state"] != "unlabelled":
            out[clip_id] = (row["state"], row["fields"], row["source"], row["reason"], row["disagreement"],
                            row["rare"])
    return out


def _stored(project: Project, policy: str) -> dict:
    result = resolve(project, policy)
    out = {c: ("gold", g.fields, g.source, None, None, None) for c, g in result.gold.items()}
    out.update({q.clip_id: ("review", None, None, q.reason, q.disagreement, q.rare) for q in result.needs_review})
    return out


def _comparable(table: dict) -> dict:
    # the reference carries gold rows' rare/disagreement too; the stored Gold does not keep them
    return {c: (v if v[0] == "review" else v[:3]) for c, v in table.items()}


@pytest.fixture
def team(project: Project) -> tuple[Project, list[int]]:
    clips = add_clips(project, 40)
    for name in ("ana", "ben", "cho"):
        add_user(project, name, "annotator", f"password-{name}")
    add_user(project, "rev", "reviewer", "password-rev")
    return project, clips


@pytest.mark.parametrize("policy", ["unanimous", "majority"])
def test_incremental_resolution_equals_resolving_from_scratch(team, policy: str) -> None:
    project, clips = team
    rng = random.Random(7)
    for step in range(6):
        for _ in range(25):
            clip = rng.choice(clips)
            user = rng.choice(["ana", "ben", "cho"])
            roll = rng.random()
            if roll < 0.08:
                add_annotation(project, clip, user, status="unclear", comment="too dark")
            elif roll < 0.12:
                add_annotation(project, clip, user, status="skipped")
            else:
                add_annotation(project, clip, user, fields=_random_fields(rng), seconds_spent=30.0)
        if step % 2:
            add_review(project, rng.choice(clips), "rev", fields=_random_fields(rng), reason="checked the clip")
        stored, reference = _stored(project, policy), _reference(project, policy)
        assert _comparable(stored) == _comparable(reference)
        summary = resolve(project, policy).summary()
        assert resolution_summary(project, policy) == summary
        assert summary["unlabelled"] == len(clips) - len(reference)
        queue = resolve(project, policy).needs_review
        assert review_queue(project, policy, limit=5, offset=2) == queue[2:7]


def test_only_clips_with_new_answers_are_resolved_again(team) -> None:
    project, clips = team
    for clip in clips[:10]:
        for user in ("ana", "ben"):
            add_annotation(project, clip, user, fields=dict(_random_fields(random.Random(clip))))
    assert refresh_resolution(project) == 10  # first call: every answered clip
    assert refresh_resolution(project) == 0  # nothing new
    add_annotation(project, clips[3], "cho", fields=dict(_random_fields(random.Random(99)), event="INTRUSION"))
    add_annotation(project, clips[20], "cho", fields=_random_fields(random.Random(1)))
    assert refresh_resolution(project) == 2
    add_review(project, clips[3], "rev", fields=_random_fields(random.Random(2)), reason="checked")
    assert refresh_resolution(project) == 1
    assert resolve(project).gold[clips[3]].source == "adjudicated"
    assert _comparable(_stored(project, "unanimous")) == _comparable(_reference(project, "unanimous"))


def test_an_older_refresh_never_replaces_a_newer_outcome(team) -> None:
    project, clips = team
    clip = clips[0]
    add_annotation(project, clip, "ana", fields=_random_fields(random.Random(1)))
    add_annotation(project, clip, "ben", fields=dict(_random_fields(random.Random(1)), event="INTRUSION"))
    refresh_resolution(project)
    old = {column.name: getattr(row, column.name) for row in [_row(project, clip)]
           for column in ClipResolution.__table__.columns}
    assert old["state"] == "review"
    add_annotation(project, clip, "ben", fields=_random_fields(random.Random(1)))  # ben corrects himself
    refresh_resolution(project)
    assert _row(project, clip).state == "gold"
    # a slow refresher that read the answers before ben's correction
    write_rows(project, ClipResolution.__table__, [old])
    assert _row(project, clip).state == "gold"


def test_a_new_rubric_version_resolves_everything_again(team) -> None:
    project, clips = team
    for clip in clips[:5]:
        add_annotation(project, clip, "ana", fields=_random_fields(random.Random(clip)))
    refresh_resolution(project)
    with project.write() as session:
        session.get(DerivedWatermark, "resolution:unanimous").rubric_version = "an-older-one"
    assert refresh_resolution(project) == 5


def test_lost_derived_state_is_rebuilt(team) -> None:
    project, clips = team
    for clip in clips[:6]:
        add_annotation(project, clip, "ana", fields=_random_fields(random.Random(clip)))
    before = _stored(project, "unanimous")
    with project.write() as session:
        session.execute(delete(ClipResolution))
        session.execute(delete(DerivedWatermark))
    assert _stored(project, "unanimous") == before


def _row(project: Project, clip_id: int) -> ClipResolution:
    with project.session() as session:
        return session.get(ClipResolution, ("unanimous", clip_id))
