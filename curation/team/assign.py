"""Who labels what: every clip once, a share of clips by several annotators for agreement, balanced load.

Assignment only ever adds: running it again assigns the clips that have no assignment yet, so earlier work and
earlier overlap are kept.

Example::

    report = assign(project, ["ana", "ben", "cho"], overlap=0.3, per_clip=3, random_state=0)
    report.load      # {"ana": 140, "ben": 140, "cho": 140}
    next_clip(project, "ana")
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import func, select

from curation.errors import CliptuneError
from curation.records.store import Annotation, Assignment, Clip, Event, Project, User


@dataclass
class AssignReport:
    new_clips: int = 0
    overlap_clips: int = 0
    assignments: int = 0
    load: dict[str, int] = field(default_factory=dict)  # total assignments per annotator afterwards

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def assign(
    project: Project,
    annotators: Sequence[str],
    *,
    overlap: float = 0.0,
    per_clip: int = 2,
    random_state: int = 0,
) -> AssignReport:
    """Assign every unassigned clip to one annotator, and a share ``overlap`` of them to ``per_clip`` annotators.

    Each clip goes to the annotators with the fewest assignments so far (ties broken at random with
    ``random_state``), so loads stay within one clip of each other when everyone is available from the start.
    """
    names = list(dict.fromkeys(a.strip() for a in annotators if a.strip()))
    if not names:
        raise CliptuneError("--annotators: name at least one annotator")
    if not 0.0 <= overlap <= 1.0:
        raise CliptuneError(f"--overlap must be a share between 0 and 1, got {overlap}")
    if overlap > 0 and not 2 <= per_clip <= len(names):
        raise CliptuneError(
            f"--per-clip {per_clip}: overlap clips need between 2 and {len(names)} annotators (the number named)"
        )
    rng = np.random.default_rng(random_state)
    report = AssignReport()
    with project.write() as session:
        users = dict(session.execute(select(User.name, User.id).where(User.name.in_(names))).all())
        missing = [n for n in names if n not in users]
        if missing:
            raise CliptuneError(f"unknown users {missing}: add them first with `cliptune users add`")
        assigned = select(Assignment.clip_id)
        new_clips = list(session.scalars(select(Clip.id).where(Clip.id.not_in(assigned)).order_by(Clip.id)))
        load_rows = session.execute(
            select(Assignment.user_id, func.count()).where(Assignment.user_id.in_(users.values()))
            .group_by(Assignment.user_id)
        ).all()
        load = {name: 0 for name in names}
        by_id = {user_id: name for name, user_id in users.items()}
        for user_id, count in load_rows:
            load[by_id[user_id]] = count
        n_overlap = int(round(overlap * len(new_clips)))
        overlap_set = set(rng.choice(new_clips, size=n_overlap, replace=False).tolist()) if n_overlap else set()
        for clip_id in rng.permutation(new_clips).tolist():
            k = per_clip if clip_id in overlap_set else 1
            tie_break = rng.permutation(len(names))
            chosen = sorted(range(len(names)), key=lambda i: (load[names[i]], tie_break[i]))[:k]
            for index in chosen:
                session.add(Assignment(clip_id=clip_id, user_id=users[names[index]]))
                load[names[index]] += 1
                report.assignments += 1
        report.new_clips = len(new_clips)
        report.overlap_clips = len(overlap_set)
        report.load = load
        session.add(Event(action="assign", detail={"annotators": names, "overlap": overlap, "per_clip": per_clip,
                                                    "new_clips": len(new_clips)}))
    return report


def assigned_clips(project: Project, user: str) -> list[tuple[int, bool]]:
    """(clip id, done) for each clip assigned to ``user``, in assignment order; done = has a current answer."""
    with project.session() as session:
        user_id = session.scalar(select(User.id).where(User.name == user))
        if user_id is None:
            raise CliptuneError(f"no user {user!r} in this project")
        answered = set(session.scalars(select(Annotation.clip_id).where(Annotation.user_id == user_id)))
        clip_ids = session.scalars(
            select(Assignment.clip_id).where(Assignment.user_id == user_id).order_by(Assignment.id)
        )
        return [(clip_id, clip_id in answered) for clip_id in clip_ids]


def next_clip(project: Project, user: str, after: int | None = None) -> int | None:
    """The next assigned clip ``user`` has not answered (submitted, skipped or unclear), or None when done."""
    pending = [clip_id for clip_id, done in assigned_clips(project, user) if not done and clip_id != after]
    return pending[0] if pending else None
