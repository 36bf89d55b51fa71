"""Every clip of a project in one table: id, source file, group, split side and label status (``cliptune clips``).

Audit findings, review queues and exports name clips by id; this maps the ids back to files for people and scripts.
One query over the store, whatever the project's size: the clip table, left-joined with each clip's current
split-ledger entry (a frozen entry wins over a draft, the earliest frozen one counts — the rule of
:func:`curation.dataset.ledger.current_split`) and with its stored resolution row
(:class:`curation.review.resolve.ClipResolution`, brought up to date first, which resolves only clips whose
answers changed).

Label status, under the gold-answer ``policy`` (unanimous or majority, as for ``cliptune split``):

- ``gold``: the clip has a gold answer (``gold_source``: adjudicated, unanimous, single or majority);
- ``needs review``: annotators disagree, or one marked it unclear (``review_reason``);
- ``answered``: answers exist but none gives a gold answer or a queue entry (all skipped, or no longer valid
  under the current rubric);
- ``unlabelled``: no answer at all.

It lives in ``review`` because label status is the review stage's resolution; the split side is a plain ledger row.

Example::

    rows = list_clips(project, label="needs review", limit=20)
    rows[0]   # {"clip": 17, "file": "/data/door/c17.mp4", "group": "camera:CAM-2", "split": "test",
              #  "split_state": "frozen", "label": "needs review", "gold_source": None, "review_reason": "disagreement",
              #  "annotators": 2}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Integer, and_, case, cast, func, select

from curation.errors import CliptuneError
from curation.records.store import Clip, Project, SplitEntry
from curation.review.consensus import POLICIES
from curation.review.resolve import ClipResolution, refresh_resolution

LABELS = ("unlabelled", "answered", "gold", "needs review")
SPLITS = ("train", "test", "none")
_STATE_LABEL = {"gold": "gold", "review": "needs review", "unlabelled": "answered"}  # a stored row means answers


def list_clips(
    project: Project,
    *,
    policy: str = "unanimous",
    label: str | None = None,
    split: str | None = None,
    group: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """One dict per clip in id order (see the module docstring), optionally only those with label status ``label``,
    split side ``split`` (train, test or none) or group key ``group``, at most ``limit`` of them."""
    if policy not in POLICIES:
        raise CliptuneError(f"--policy {policy}: choose one of {', '.join(POLICIES)}")
    if label is not None and label not in LABELS:
        raise CliptuneError(f"--label {label!r}: choose one of {', '.join(LABELS)}")
    if split is not None and split not in SPLITS:
        raise CliptuneError(f"--split {split!r}: choose one of {', '.join(SPLITS)}")
    if limit is not None and limit < 1:
        raise CliptuneError(f"--limit must be at least 1, got {limit}")
    refresh_resolution(project, policy)
    frozen = cast(SplitEntry.frozen, Integer) == 1
    current = (select(SplitEntry.clip_id,
                      func.coalesce(func.min(case((frozen, SplitEntry.id))), func.min(SplitEntry.id)).label("entry"))
               .group_by(SplitEntry.clip_id).subquery())
    resolution = ClipResolution
    query = (select(Clip.id, Clip.root, Clip.path, Clip.group_key, SplitEntry.split, SplitEntry.frozen,
                    resolution.state, resolution.source, resolution.reason, resolution.annotators)
             .outerjoin(current, current.c.clip_id == Clip.id)
             .outerjoin(SplitEntry, SplitEntry.id == current.c.entry)
             .outerjoin(resolution, and_(resolution.clip_id == Clip.id, resolution.policy == policy))
             .order_by(Clip.id))
    if group is not None:
        query = query.where(Clip.group_key == group)
    if split == "none":
        query = query.where(SplitEntry.id.is_(None))
    elif split is not None:
        query = query.where(SplitEntry.split == split)
    if label == "unlabelled":
        query = query.where(resolution.state.is_(None))
    elif label is not None:
        wanted = next(state for state, name in _STATE_LABEL.items() if name == label)
        query = query.where(resolution.state == wanted)
    if limit is not None:
        query = query.limit(limit)
    with project.session() as session:
        rows = session.execute(query).all()
    return [{"clip": clip_id, "file": str(Path(root) / path), "group": group_key,
             "split": side or "none", "split_state": None if side is None else "frozen" if is_frozen else "draft",
             "label": _STATE_LABEL.get(state, "unlabelled"), "gold_source": source if state == "gold" else None,
             "review_reason": reason if state == "review" else None, "annotators": len(annotators or [])}
            for clip_id, root, path, group_key, side, is_frozen, state, source, reason, annotators in rows]
