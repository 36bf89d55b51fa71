"""Running tallies (curation.team.tally) equal the figures computed from scratch, step after step."""

from __future__ import annotations

import random

from test_resolution_store import _random_fields
from test_resolve import add_clips

from curation.records.annotations import add_annotation, add_review
from curation.records.store import Assignment, Project
from curation.records.users import add_user
from curation.review.field_agreement import agreement_report
from curation.team.budget import measured_pace
from curation.team.progress import annotator_progress, label_distribution, throughput
from curation.team.tally import Tally


def _assign(project: Project, pairs: list[tuple[int, int]]) -> None:
    with project.write() as session:
        session.add_all(Assignment(clip_id=clip, user_id=user) for clip, user in pairs)


def test_tally_equals_the_figures_from_scratch(project: Project) -> None:
    clips = add_clips(project, 30)
    users = {name: add_user(project, name, "annotator", f"password-{name}").id for name in ("ana", "ben", "cho")}
    add_user(project, "rev", "reviewer", "password-rev")
    rng = random.Random(3)
    tally = Tally(project)
    assert tally.refresh() is False and tally.progress() == []
    for step in range(8):
        fresh = [(clip, users[name]) for clip in rng.sample(clips, 6) for name in rng.sample(sorted(users), 2)]
        with project.session() as session:
            known = {(a.clip_id, a.user_id) for a in session.query(Assignment)}
        _assign(project, sorted(set(fresh) - known))
        for _ in range(12):
            clip, name = rng.choice(clips), rng.choice(sorted(users))  # answers outside assignments count too
            roll = rng.random()
            if roll < 0.1:
                add_annotation(project, clip, name, status="unclear", comment="dark", seconds_spent=12.0)
            elif roll < 0.2:
                add_annotation(project, clip, name, status="skipped")
            else:
                add_annotation(project, clip, name, fields=_random_fields(rng), seconds_spent=rng.uniform(5, 90))
        if step % 3 == 2:
            add_review(project, rng.choice(clips), "rev", fields=_random_fields(rng), reason="looked again")
        assert tally.refresh() is True
        assert tally.progress() == annotator_progress(project)
        assert tally.throughput() == throughput(project)
        assert tally.label_distribution() == label_distribution(project)
        assert tally.label_distribution(gold=True) == label_distribution(project, gold=True)
        assert tally.measured_pace() == measured_pace(project)
        assert tally.agreement(n_boot=50) == agreement_report(project, n_boot=50)
    assert tally.refresh() is False  # nothing new: nothing read, nothing changed
    # a second tally built in one go agrees with the one built step by step
    again = Tally(project)
    again.refresh()
    assert again.progress() == tally.progress() and again.label_distribution(gold=True) == \
        tally.label_distribution(gold=True)
