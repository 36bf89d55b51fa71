"""Who has done what, how fast, and what a labeller or reviewer sees: the plain functions behind the browser app.

Blind labelling is built in: :func:`labelling_view` returns only the asking annotator's own answers, and refuses a
clip that is not assigned to them, so no page can show an annotator another person's answer by passing it along.
Pace is measured over labelling acts (each stored version with a time), so a revision counts as work done.

Example::

    user_progress(project, "ana")        # UserProgress(assigned=14, done=5, ..., median_s=41.0, clips_per_hour=86.3)
    view = labelling_view(project, "ana")  # the next clip to label, its proxy, and ana's earlier answer if any
    sheet = review_sheet(project, 12)      # every annotator's current answer for clip 12, differing fields named
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, select

from curation.errors import CliptuneError
from curation.records.annotations import AnnotationRecord, current_annotations, latest_answer_ids
from curation.records.store import Annotation, Assignment, Clip, Project, User
from curation.team.assign import assigned_clips


@dataclass(frozen=True)
class Pace:
    acts: int  # labelling acts with a measured time
    median_s: float | None
    clips_per_hour: float | None  # 3600 × acts / seconds spent

    @classmethod
    def of(cls, seconds: list[float]) -> Pace:
        seconds = [s for s in seconds if s is not None]
        if not seconds:
            return cls(0, None, None)
        total = sum(seconds)
        per_hour = round(3600 * len(seconds) / total, 1) if total > 0 else None
        return cls(len(seconds), round(statistics.median(seconds), 1), per_hour)


@dataclass(frozen=True)
class UserProgress:
    user: str
    role: str
    assigned: int
    done: int  # assigned clips with a current answer of any status
    submitted: int
    skipped: int
    unclear: int
    pace: Pace

    @property
    def remaining(self) -> int:
        return self.assigned - self.done

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["remaining"] = self.remaining
        return data


@dataclass(frozen=True)
class ClipView:
    id: int
    path: str
    proxy: Path | None  # absolute path of the browser proxy
    fps: float
    n_frames: int
    duration_s: float
    width: int
    height: int
    metadata: dict[str, Any]


@dataclass(frozen=True)
class LabellingView:
    clip: ClipView | None  # None: nothing left to label
    previous: AnnotationRecord | None  # this annotator's current answer for the clip, if any
    progress: UserProgress
    upcoming: int | None = None  # the clip likely to come after this one (to fetch ahead)
    own_answers: list[AnnotationRecord] = field(default_factory=list)  # as :func:`own_answers` returns them


@dataclass(frozen=True)
class ReviewSheet:
    clip: ClipView
    answers: list[AnnotationRecord]  # every annotator's current answer, by annotator name
    differing: list[str]  # rubric fields on which the submitted answers do not all agree
    values: dict[str, dict[str, Any]] = field(default_factory=dict)  # field -> {annotator: value}


def _user_row(session: Any, user: str) -> User:
    row = session.scalar(select(User).where(User.name == user))
    if row is None:
        raise CliptuneError(f"no user {user!r} in this project; add it with `cliptune users add`")
    return row


def _seconds_by_user(project: Project, user: str | None = None) -> dict[str, list[float]]:
    query = (select(User.name, Annotation.seconds_spent).join(User, User.id == Annotation.user_id)
             .where(Annotation.seconds_spent.is_not(None)))
    if user is not None:  # the label page asks on every run: read one person's rows only
        query = query.where(User.name == user)
    with project.session() as session:
        rows = session.execute(query).all()
    seconds: dict[str, list[float]] = {}
    for name, value in rows:
        seconds.setdefault(name, []).append(float(value))
    return seconds


def user_progress(project: Project, user: str) -> UserProgress:
    """Assigned and answered clips of ``user``, by status, and their pace (median seconds, clips per hour)."""
    with project.session() as session:
        role = _user_row(session, user).role
    return _progress(project, user, role, assigned_clips(project, user), current_annotations(project, user=user))


def _progress(project: Project, user: str, role: str, assigned: list[tuple[int, bool]],
              answers: list[AnnotationRecord]) -> UserProgress:
    assigned_ids = {clip_id for clip_id, _ in assigned}
    statuses = Counter(a.status for a in answers if a.clip_id in assigned_ids)
    return UserProgress(
        user=user, role=role, assigned=len(assigned), done=sum(done for _, done in assigned),
        submitted=statuses["submitted"], skipped=statuses["skipped"], unclear=statuses["unclear"],
        pace=Pace.of(_seconds_by_user(project, user).get(user, [])),
    )


def annotator_progress(project: Project) -> list[UserProgress]:
    """:func:`user_progress` for everyone who has assignments or answers, in the order they were added.

    Counted in the database, in a handful of queries whatever the team's size (the dashboard asks on every run).
    """
    assigned = select(Assignment.clip_id, Assignment.user_id).subquery()
    current = (select(Annotation.user_id, Annotation.status, func.count())
               .join(assigned, and_(assigned.c.clip_id == Annotation.clip_id,
                                    assigned.c.user_id == Annotation.user_id))
               .where(Annotation.id.in_(latest_answer_ids())).group_by(Annotation.user_id, Annotation.status))
    with project.session() as session:
        people = session.execute(select(User.id, User.name, User.role).where(
            User.id.in_(select(Assignment.user_id)) | User.id.in_(select(Annotation.user_id))
        ).order_by(User.id)).all()
        n_assigned = dict(session.execute(select(Assignment.user_id, func.count()).group_by(Assignment.user_id)).all())
        statuses: dict[int, Counter] = {}
        for user_id, status, count in session.execute(current):
            statuses.setdefault(user_id, Counter())[status] = count
    seconds = _seconds_by_user(project)
    result = []
    for user_id, name, role in people:
        counts = statuses.get(user_id, Counter())
        # a clip is done once its annotator has a current answer of any status
        result.append(UserProgress(user=name, role=role, assigned=n_assigned.get(user_id, 0),
                                   done=sum(counts.values()), submitted=counts["submitted"],
                                   skipped=counts["skipped"], unclear=counts["unclear"],
                                   pace=Pace.of(seconds.get(name, []))))
    return result


def throughput(project: Project) -> dict[str, Any]:
    """The whole team's pace: labelling acts, hours spent, median seconds per clip, clips per hour."""
    seconds = [s for values in _seconds_by_user(project).values() for s in values]
    pace = Pace.of(seconds)
    return {"acts": pace.acts, "hours": round(sum(seconds) / 3600, 2), "median_s": pace.median_s,
            "clips_per_hour": pace.clips_per_hour}


def clip_view(project: Project, clip_id: int) -> ClipView:
    """What a player needs to show one clip: its proxy (absolute path), frame rate and size."""
    with project.session() as session:
        clip = session.get(Clip, clip_id)
    if clip is None:
        raise CliptuneError(f"no clip {clip_id} in this project")
    proxy = (project.path / clip.proxy_path).resolve() if clip.proxy_path else None
    return ClipView(clip.id, clip.path, proxy, clip.fps, clip.n_frames, clip.duration_s, clip.width, clip.height,
                    dict(clip.metadata_ or {}))


def labelling_view(project: Project, user: str, clip_id: int | None = None) -> LabellingView:
    """The clip ``user`` should label — ``clip_id`` (to revise) or their next unanswered one — blind to others.

    ``previous`` is the user's own current answer for that clip; nobody else's answer is read. The page asks on
    every run, so the user's assignments and answers are read once and everything else is worked out from them.
    """
    with project.session() as session:
        role = _user_row(session, user).role
    assigned = assigned_clips(project, user)
    answers = current_annotations(project, user=user)
    progress = _progress(project, user, role, assigned, answers)
    mine = sorted(answers, key=lambda a: a.id, reverse=True)
    pending = [c for c, done in assigned if not done]  # what next_clip() picks from
    if clip_id is None:
        clip_id = pending[0] if pending else None
    elif clip_id not in {c for c, _ in assigned}:
        raise CliptuneError(f"clip {clip_id} is not assigned to {user}")
    if clip_id is None:
        return LabellingView(None, None, progress, own_answers=mine)
    own = [a for a in answers if a.clip_id == clip_id]
    upcoming = next((c for c in pending if c != clip_id), None)
    return LabellingView(clip_view(project, clip_id), own[-1] if own else None, progress, upcoming, mine)


def own_answers(project: Project, user: str) -> list[AnnotationRecord]:
    """The current answers of ``user`` (never anyone else's), newest first: what they may revise."""
    return sorted(current_annotations(project, user=user), key=lambda a: a.id, reverse=True)


def answer_history(project: Project, user: str, clip_id: int) -> list[AnnotationRecord]:
    """Every version ``user`` stored for ``clip_id``, oldest first (a revision adds a version)."""
    return current_annotations(project, clip_ids=[clip_id], user=user, history=True)


def review_sheet(project: Project, clip_id: int) -> ReviewSheet:
    """Every annotator's current answer for a clip side by side, and the fields on which they differ.

    Fields differ by the rubric's own rule (tolerance for numbers and times, similarity for text), the same rule
    that decides gold answers, so what the reviewer sees highlighted is what sent the clip to review.
    """
    from curation.review.consensus import values_agree

    rubric = project.rubric
    answers = sorted(current_annotations(project, clip_ids=[clip_id]), key=lambda a: a.user)
    submitted = [a for a in answers if a.status == "submitted" and a.fields]
    values = {f.name: {a.user: (a.fields or {}).get(f.name) for a in submitted} for f in rubric.fields}
    differing = []
    for rubric_field in rubric.fields:
        seen = list(values[rubric_field.name].values())
        if any(not values_agree(rubric_field, a, b) for i, a in enumerate(seen) for b in seen[i + 1:]):
            differing.append(rubric_field.name)
    return ReviewSheet(clip_view(project, clip_id), answers, differing, values)


def label_distribution(project: Project, *, gold: bool = False) -> dict[str, dict[str, int]]:
    """Counts per value of each choice and ordinal field, over current submitted answers (or gold answers)."""
    rubric = project.rubric
    names = [f.name for f in rubric.fields if f.type in ("choice", "ordinal")]
    if not names:
        return {}
    if gold:
        from curation.review.resolve import ClipResolution, refresh_resolution

        refresh_resolution(project, "unanimous")
        query = select(ClipResolution.fields).where(ClipResolution.policy == "unanimous",
                                                    ClipResolution.state == "gold")
    else:
        query = select(Annotation.fields).where(Annotation.id.in_(latest_answer_ids()),
                                                Annotation.status == "submitted", Annotation.fields.is_not(None))
    counts = {name: Counter() for name in names}
    with project.session() as session:
        for (fields,) in session.execute(query):
            for name in names:
                value = (fields or {}).get(name)
                if value is not None:
                    counts[name][value] += 1
    return {name: {choice: counts[name].get(choice, 0) for choice in rubric.field_map[name].choices}
            for name in names}


def forecast(project: Project, target: int, *, pace: dict[str, Any] | None = None) -> dict[str, Any]:
    """:func:`curation.team.budget.budget_forecast` (labelling, held-out and review work at the team's measured pace)
    in one flat shape for the dashboard, its whole answer kept under ``detail``. Keys: target, hours_total,
    hours_remaining, seconds_per_clip, clips_per_hour, pace_source, parts ({label, hold_out, review} hours),
    source, detail.
    """
    from curation.team.budget import budget_forecast

    if isinstance(target, bool) or not isinstance(target, int) or target < 1:
        raise CliptuneError(f"target must be a whole number of clips, at least 1, got {target}")
    detail = budget_forecast(project, target, pace=pace)
    pace = detail.get("pace", {})
    return {"target": target, "hours_total": detail.get("total_hours"),
            "hours_remaining": detail.get("remaining_hours"), "seconds_per_clip": pace.get("seconds_per_clip"),
            "clips_per_hour": pace.get("clips_per_hour"), "pace_source": pace.get("source"),
            "parts": {part: (detail.get(part) or {}).get("hours") for part in ("label", "hold_out", "review")},
            "source": "curation.team.budget", "detail": detail}
