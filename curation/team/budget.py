"""The labelling budget: person-hours to label, hold out and review a target number of clips.

The pace is measured: the median seconds per clip of each of this project's annotators (their submitted
answers' ``seconds_spent``), then the median over annotators, so one slow or fast person does not set the pace
for everyone. With nothing measured yet it falls back to the field's rule of thumb, 20 clips an hour.

The forecast for ``target`` clips:

- **label**: every clip once, and a share ``overlap`` by ``per_clip`` annotators (for agreement statistics);
- **hold out**: each held-out clip (``test_size``) not already overlapped gets a second annotator, so the gold
  answers the model is judged on were checked by two people;
- **review**: a share ``review_share`` of the clips goes to a reviewer (measured from this project's resolve
  when it has answers, 15 % otherwise), at the labelling pace times ``review_factor``.

Example::

    budget_forecast(project, target=1000)["total_hours"]   # 73.5 at 20 clips/hour with the defaults
"""

from __future__ import annotations

import statistics
from typing import Any

from sqlalchemy import select

from curation.errors import CliptuneError
from curation.records.annotations import latest_answer_ids
from curation.records.store import Annotation, Project, User
from curation.review.resolve import resolution_summary

RULE_OF_THUMB_CLIPS_PER_HOUR = 20.0
DEFAULT_REVIEW_SHARE = 0.15


def measured_pace(project: Project) -> dict[str, Any]:
    """Median seconds per clip of each annotator, the median over annotators, and where the figure comes from."""
    per_annotator: dict[str, list[float]] = {}
    query = (select(User.name, Annotation.seconds_spent).join(User, User.id == Annotation.user_id)
             .where(Annotation.id.in_(latest_answer_ids()), Annotation.status == "submitted",
                    Annotation.seconds_spent > 0))
    with project.session() as session:
        for name, seconds in session.execute(query):
            per_annotator.setdefault(name, []).append(float(seconds))
    return pace_from_seconds(per_annotator)


def pace_from_seconds(per_annotator: dict[str, list[float]]) -> dict[str, Any]:
    """The pace from each annotator's seconds per clip (see :func:`measured_pace`)."""
    medians = {name: round(statistics.median(values), 2) for name, values in sorted(per_annotator.items())}
    if medians:
        seconds = float(statistics.median(medians.values()))
        source = "measured"
    else:
        seconds = 3600.0 / RULE_OF_THUMB_CLIPS_PER_HOUR
        source = "rule_of_thumb"
    return {
        "seconds_per_clip": round(seconds, 2),
        "clips_per_hour": round(3600.0 / seconds, 2),
        "source": source,
        "annotators": medians,
        "annotations_measured": sum(len(v) for v in per_annotator.values()),
    }


def _check_share(name: str, value: float, upper_inclusive: bool = True) -> float:
    ok = 0.0 <= value <= 1.0 if upper_inclusive else 0.0 <= value < 1.0
    if isinstance(value, bool) or not isinstance(value, int | float) or not ok:
        raise CliptuneError(f"--{name.replace('_', '-')} must be a share between 0 and 1, got {value}")
    return float(value)


def budget_forecast(
    project: Project,
    target: int = 1000,
    *,
    overlap: float = 0.2,
    per_clip: int = 2,
    test_size: float = 0.15,
    review_share: float | None = None,
    review_factor: float = 1.0,
    pace: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Person-hours to label, hold out and review ``target`` clips at this project's measured pace.

    ``pace`` is :func:`measured_pace`'s answer when the caller keeps it already (the dashboard's tally).
    """
    if isinstance(target, bool) or not isinstance(target, int) or target < 1:
        raise CliptuneError(f"--target must be a whole number of clips, at least 1, got {target}")
    overlap = _check_share("overlap", overlap)
    test_size = _check_share("test_size", test_size, upper_inclusive=False)
    if isinstance(per_clip, bool) or not isinstance(per_clip, int) or per_clip < 2:
        raise CliptuneError(f"--per-clip must be 2 or more annotators per overlap clip, got {per_clip}")
    if not review_factor > 0:
        raise CliptuneError(f"--review-factor must be positive, got {review_factor}")
    pace = measured_pace(project) if pace is None else pace
    seconds = pace["seconds_per_clip"]

    resolution = resolution_summary(project, "unanimous")
    answered = resolution["gold"] + resolution["needs_review"]
    if review_share is not None:
        review_share, review_source = _check_share("review_share", review_share), "given"
    elif answered:
        review_share, review_source = resolution["needs_review"] / answered, "measured"
    else:
        review_share, review_source = DEFAULT_REVIEW_SHARE, "default"

    label_annotations = target * (1 + overlap * (per_clip - 1))
    holdout_clips = target * test_size
    holdout_annotations = holdout_clips * (1 - overlap)
    review_clips = target * review_share

    def hours(clips: float, factor: float = 1.0) -> float:
        return round(clips * seconds * factor / 3600.0, 2)

    label_h, holdout_h, review_h = hours(label_annotations), hours(holdout_annotations), hours(review_clips,
                                                                                              review_factor)
    total = round(label_h + holdout_h + review_h, 2)
    done = resolution["gold"]
    return {
        "target": target,
        "pace": pace,
        "assumptions": {"overlap": overlap, "per_clip": per_clip, "test_size": test_size,
                        "review_share": round(review_share, 4), "review_share_source": review_source,
                        "review_factor": review_factor},
        "label": {"clips": target, "annotations": round(label_annotations, 1), "hours": label_h},
        "hold_out": {"clips": round(holdout_clips, 1), "extra_annotations": round(holdout_annotations, 1),
                     "hours": holdout_h},
        "review": {"clips": round(review_clips, 1), "hours": review_h},
        "total_hours": total,
        "done": {"gold_clips": done, "answered_clips": answered},
        "remaining_hours": round(total * max(0, target - done) / target, 2),
    }
