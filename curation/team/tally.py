"""Running tallies of a project's answers for pages that ask on every run: updated from new rows only.

The dashboard shows progress per annotator, the team's pace and the label distribution after every click. Read
from scratch, that is every answer of the project each time (seconds at 100,000 clips). A :class:`Tally` reads each
answer, assignment and gold answer once: :meth:`Tally.refresh` reads only the rows added since the last call
(answers and assignments are append-only, so their ids say what is new) and updates its counters; the figures it
gives equal :func:`curation.team.progress.annotator_progress`, :func:`~curation.team.progress.throughput` and
:func:`~curation.team.progress.label_distribution` computed from scratch. A long-running process (the app) keeps one
per project; a :class:`Tally` is not shared between threads without a lock.

Example::

    tally = Tally(project)
    tally.refresh()            # True when something changed since the last call
    tally.progress(), tally.throughput(), tally.label_distribution(gold=True)
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import func, or_, select

from curation.records.store import Annotation, Assignment, Project, User
from curation.review.agreement_store import AgreementState, ClipAgreement, refresh_agreement, stored_rows
from curation.review.resolve import ClipResolution, refresh_resolution
from curation.team.budget import pace_from_seconds
from curation.team.progress import Pace, UserProgress

GOLD_POLICY = "unanimous"  # the policy label_distribution(gold=True) counts


class Tally:
    """Progress, pace and label counts of one project, kept current by reading only new rows."""

    def __init__(self, project: Project) -> None:
        self.project = project
        rubric = project.rubric
        self.rubric_version = project.rubric_version
        self.counted_fields = [f.name for f in rubric.fields if f.type in ("choice", "ordinal")]
        self.choices = {name: list(rubric.field_map[name].choices) for name in self.counted_fields}
        self.last_answer = self.last_assignment = 0
        self.gold_marks = (0, 0)  # (answer id, review id) the gold counts are current to
        self.users: dict[int, tuple[str, str]] = {}
        self.assigned: set[tuple[int, int]] = set()
        self.assigned_per_user: Counter = Counter()
        # (clip, user) -> (status, counted values, seconds) of the current answer
        self.current: dict[tuple[int, int], tuple[str, tuple | None, float | None]] = {}
        self.active: set[int] = set()  # users with an assignment or an answer
        self.budget_pace: dict[str, Any] | None = None
        self.submitted_seconds: dict[int, dict[int, float]] = {}  # per user, clip -> seconds of a current submitted
        self.statuses: dict[int, Counter] = {}  # per user, current answers of assigned clips
        self.seconds: dict[int, list[float]] = {}  # per user, every labelling act with a time
        self.paces: dict[int, Pace] = {}  # medians are sorts: kept until that person's times change
        self.team_pace: dict[str, Any] | None = None
        self.answer_counts = {name: Counter() for name in self.counted_fields}
        self.gold: dict[int, tuple | None] = {}
        self.gold_counts = {name: Counter() for name in self.counted_fields}
        self.agreement_state = AgreementState(rubric)
        self.agreement_marks = (0, 0)
        self.agreement_report: dict[tuple, dict[str, Any]] = {}

    # -- reading new rows -------------------------------------------------------------------------------
    def refresh(self) -> bool:
        """Read what was added since the last call. Returns whether anything changed."""
        with self.project.session() as session:
            self.users = {user_id: (name, role) for user_id, name, role in
                          session.execute(select(User.id, User.name, User.role).order_by(User.id))}
            assignments = session.execute(select(Assignment.id, Assignment.clip_id, Assignment.user_id)
                                          .where(Assignment.id > self.last_assignment).order_by(Assignment.id)).all()
            answers = session.execute(select(Annotation.id, Annotation.clip_id, Annotation.user_id, Annotation.status,
                                             Annotation.fields, Annotation.seconds_spent)
                                      .where(Annotation.id > self.last_answer).order_by(Annotation.id)).all()
        for assignment_id, clip_id, user_id in assignments:
            self._assign((clip_id, user_id))
            self.last_assignment = assignment_id
        for answer_id, clip_id, user_id, status, fields, seconds in answers:
            self._answer((clip_id, user_id), status, fields, seconds)
            self.last_answer = answer_id
        gold_changed = self._refresh_gold()
        agreement_changed = self._refresh_agreement()
        return bool(assignments or answers or gold_changed or agreement_changed)

    def _assign(self, key: tuple[int, int]) -> None:
        if key in self.assigned:
            return
        self.assigned.add(key)
        self.active.add(key[1])
        self.assigned_per_user[key[1]] += 1
        if key in self.current:
            self.statuses.setdefault(key[1], Counter())[self.current[key][0]] += 1

    def _values(self, status: str, fields: dict[str, Any] | None) -> tuple | None:
        if status != "submitted" or fields is None:
            return None
        return tuple(fields.get(name) for name in self.counted_fields)

    def _answer(self, key: tuple[int, int], status: str, fields: dict | None, seconds: float | None) -> None:
        if seconds is not None:
            self.seconds.setdefault(key[1], []).append(float(seconds))
            self.paces.pop(key[1], None)
            self.team_pace = None
        old = self.current.get(key)
        values = self._values(status, fields)
        if old is not None:
            self._count(self.answer_counts, old[1], -1)
            if key in self.assigned:
                self.statuses[key[1]][old[0]] -= 1
        self.current[key] = (status, values, seconds)
        timed = self.submitted_seconds.setdefault(key[1], {})
        if status == "submitted" and seconds is not None and seconds > 0:
            timed[key[0]] = float(seconds)
        else:
            timed.pop(key[0], None)
        self.active.add(key[1])
        self.budget_pace = None
        self._count(self.answer_counts, values, +1)
        if key in self.assigned:
            self.statuses.setdefault(key[1], Counter())[status] += 1

    def _count(self, counts: dict[str, Counter], values: tuple | None, step: int) -> None:
        if values is None:
            return
        for name, value in zip(self.counted_fields, values, strict=True):
            if value is not None:
                counts[name][value] += step

    def _refresh_gold(self) -> bool:
        refresh_resolution(self.project, GOLD_POLICY)
        table = ClipResolution
        with self.project.session() as session:
            # a stored row's stamps are the newest answer and review it was computed from: newer stamps, new rows
            rows = session.execute(select(table.clip_id, table.state, table.fields).where(
                table.policy == GOLD_POLICY,
                or_(table.annotation_stamp > self.gold_marks[0], table.review_stamp > self.gold_marks[1]))).all()
            marks = session.execute(select(func.max(table.annotation_stamp), func.max(table.review_stamp))
                                    .where(table.policy == GOLD_POLICY)).one()
        for clip_id, state, fields in rows:
            self._count(self.gold_counts, self.gold.pop(clip_id, None), -1)
            values = tuple((fields or {}).get(name) for name in self.counted_fields) if state == "gold" else None
            if values is not None:
                self.gold[clip_id] = values
            self._count(self.gold_counts, values, +1)
        self.gold_marks = (marks[0] or 0, marks[1] or 0)
        return bool(rows)

    def _refresh_agreement(self) -> bool:
        refresh_agreement(self.project)
        rows = stored_rows(self.project, since=self.agreement_marks)
        for clip_id, row in rows:
            self.agreement_state.apply(clip_id, row)
        if rows:
            with self.project.session() as session:
                marks = session.execute(select(func.max(ClipAgreement.annotation_stamp),
                                               func.max(ClipAgreement.review_stamp))).one()
            self.agreement_marks = (marks[0] or 0, marks[1] or 0)
            self.agreement_report = {}
        return bool(rows)

    # -- figures ---------------------------------------------------------------------------------------
    def progress(self) -> list[UserProgress]:
        """As :func:`curation.team.progress.annotator_progress`."""
        result = []
        for user_id, (name, role) in self.users.items():
            if user_id not in self.active:
                continue
            counts = self.statuses.get(user_id, Counter())
            result.append(UserProgress(user=name, role=role, assigned=self.assigned_per_user[user_id],
                                       done=sum(counts.values()), submitted=counts["submitted"],
                                       skipped=counts["skipped"], unclear=counts["unclear"],
                                       pace=self._pace(user_id)))
        return result

    def _pace(self, user_id: int) -> Pace:
        if user_id not in self.paces:
            self.paces[user_id] = Pace.of(self.seconds.get(user_id, []))
        return self.paces[user_id]

    def throughput(self) -> dict[str, Any]:
        """As :func:`curation.team.progress.throughput`."""
        if self.team_pace is None:
            seconds = [s for values in self.seconds.values() for s in values]
            pace = Pace.of(seconds)
            self.team_pace = {"acts": pace.acts, "hours": round(sum(seconds) / 3600, 2), "median_s": pace.median_s,
                              "clips_per_hour": pace.clips_per_hour}
        return dict(self.team_pace)

    def label_distribution(self, *, gold: bool = False) -> dict[str, dict[str, int]]:
        """As :func:`curation.team.progress.label_distribution`."""
        counts = self.gold_counts if gold else self.answer_counts
        return {name: {choice: counts[name].get(choice, 0) for choice in self.choices[name]}
                for name in self.counted_fields}

    def measured_pace(self) -> dict[str, Any]:
        """As :func:`curation.team.budget.measured_pace` (for :func:`~curation.team.budget.budget_forecast`)."""
        if self.budget_pace is None:
            self.budget_pace = pace_from_seconds({self.users[user_id][0]: list(times.values())
                                                  for user_id, times in self.submitted_seconds.items() if times})
        return dict(self.budget_pace)

    def agreement(self, *, n_boot: int = 500, random_state: int = 0) -> dict[str, Any]:
        """As :func:`curation.review.field_agreement.agreement_report`, from the clips' rows read so far (the
        bootstrap runs again only after a change)."""
        key = (n_boot, random_state)
        if key not in self.agreement_report:
            if self.agreement_state.has_invalid_labels():
                from curation.review.field_agreement import agreement_report

                self.agreement_report[key] = agreement_report(self.project, n_boot=n_boot, random_state=random_state)
            else:
                names = {name for name, role in self.users.values() if role == "annotator"}
                self.agreement_report[key] = self.agreement_state.report(n_boot=n_boot, random_state=random_state,
                                                                         annotator_names=names)
        return self.agreement_report[key]
