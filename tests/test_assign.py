"""Assignment: every clip once, overlap for agreement, balanced load, re-running adds only new clips."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import select

from curation.errors import CliptuneError
from curation.records.annotations import add_annotation
from curation.records.store import Assignment, Clip, Project
from curation.records.users import add_user
from curation.team.assign import assign, assigned_clips, next_clip

FIELDS = {"event": "NO_ACTIVITY", "persons": 0, "badge_events": 0, "door": 3, "time": "10:00"}


def add_clips(project: Project, start: int, n: int) -> None:
    with project.write() as session:
        session.add_all([Clip(root="/f", path=f"c{i}.mp4", sha256=f"{i:064x}", source_sha256=f"{i:064x}",
                              duration_s=4, fps=8, width=64, height=64, n_frames=32, group_key=f"g{i % 5}")
                         for i in range(start, start + n)])


def assignments(project: Project) -> list[tuple[int, int]]:
    with project.session() as session:
        return [(a.clip_id, a.user_id) for a in session.scalars(select(Assignment))]


def test_every_clip_once_overlap_and_balance(project: Project) -> None:
    names = ["ana", "ben", "cho"]
    for name in names:
        add_user(project, name, "annotator", f"password-{name}")
    add_clips(project, 0, 100)
    report = assign(project, names, overlap=0.3, per_clip=3, random_state=1)
    per_clip = Counter(clip for clip, _ in assignments(project))
    assert len(per_clip) == 100 and report.overlap_clips == 30
    assert Counter(per_clip.values()) == {1: 70, 3: 30}
    assert max(report.load.values()) - min(report.load.values()) <= 1 and sum(report.load.values()) == 160
    assert len(set(assignments(project))) == len(assignments(project))  # nobody twice on one clip

    add_clips(project, 100, 20)
    before = set(assignments(project))
    again = assign(project, names, overlap=0.3, per_clip=3, random_state=1)
    assert again.new_clips == 20 and before <= set(assignments(project))
    assert Counter(Counter(c for c, _ in assignments(project)).values()) == {1: 84, 3: 36}
    assert assign(project, names, overlap=0.3, per_clip=3).assignments == 0


def test_next_clip_follows_the_users_own_work(project: Project) -> None:
    add_user(project, "ana", "annotator", "password-ana")
    add_user(project, "ben", "annotator", "password-ben")
    add_clips(project, 0, 4)
    assign(project, ["ana", "ben"], overlap=1.0, per_clip=2)
    order = [clip for clip, _ in assigned_clips(project, "ana")]
    assert next_clip(project, "ana") == order[0]
    add_annotation(project, order[0], "ana", fields=FIELDS)
    add_annotation(project, order[1], "ana", status="skipped")
    assert next_clip(project, "ana") == order[2]
    assert next_clip(project, "ben") == [c for c, _ in assigned_clips(project, "ben")][0]  # ben's work is his own
    for clip in order[2:]:
        add_annotation(project, clip, "ana", fields=FIELDS)
    assert next_clip(project, "ana") is None


def test_assign_errors(project: Project) -> None:
    add_user(project, "ana", "annotator", "password-ana")
    with pytest.raises(CliptuneError, match="unknown users"):
        assign(project, ["ana", "zed"])
    with pytest.raises(CliptuneError, match="between 2 and 1"):
        assign(project, ["ana"], overlap=0.2, per_clip=2)
    with pytest.raises(CliptuneError, match="between 0 and 1"):
        assign(project, ["ana"], overlap=1.5)
