"""The split ledger: a project's held-out split, drawn from gold answers, frozen on request, stable afterwards.

:func:`split_project` reads the clips and their gold answers, joins clips into groups (the clip's group key —
camera, session, patient — united with near-duplicate clusters), and asks the core
(:func:`curation.dataset.split.stratified_group_split`) for a side per group. The result goes to the ``split_ledger``
table. Entries written with ``freeze=True`` are sacred: a later split assigns only clips that are not frozen yet,
a new clip of a group that already has frozen clips joins that group's side, and SQLite triggers refuse any
update or delete of a frozen row, so no code path can move a frozen held-out clip into train.

Entries written without ``freeze`` are a draft: the next split replaces them.

Example::

    result = split_project(project, test_size=0.15, stratify=["event"], freeze=True)
    result.report["groups_straddling"]      # 0
    current_split(project)[clip_id].split    # "test"
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import delete, desc, insert, select

from curation.dataset.split import TEST, TRAIN, UNASSIGNED, split_report, stratified_group_split
from curation.errors import CliptuneError
from curation.records.store import Clip, Event, Project, SplitEntry, utcnow
from curation.review.resolve import resolve

SPLITS = ("train", "test")
_FROZEN_TRIGGERS = tuple(
    f"CREATE TRIGGER IF NOT EXISTS split_ledger_frozen_no_{op.lower()} BEFORE {op} ON split_ledger "
    f"WHEN OLD.frozen = 1 BEGIN SELECT RAISE(ABORT, 'frozen split entries never change: "
    f"a frozen held-out clip stays held out'); END"
    for op in ("UPDATE", "DELETE")
)


@dataclass(frozen=True)
class LedgerEntry:
    clip_id: int
    split: str  # train | test
    dataset_version: str
    frozen: bool


@dataclass
class SplitResult:
    """What :func:`split_project` decided, with the report ``cliptune split --json`` prints."""

    assignment: dict[int, str]  # clip id -> train | test, for every clip with a gold answer
    groups: dict[int, str]  # clip id -> split group label (connected group keys and near-duplicate clusters)
    dataset_version: str
    report: dict[str, Any] = field(default_factory=dict)


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[Any, Any] = {}

    def find(self, item: Any) -> Any:
        parent = self.parent.setdefault(item, item)
        while parent != item:
            grand = self.parent[parent]
            self.parent[item] = grand  # path halving keeps the trees flat
            item, parent = parent, self.parent.setdefault(grand, grand)
        return item

    def union(self, a: Any, b: Any) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            self.parent[root_b] = root_a


def split_groups(group_keys: dict[int, str], extra_groups: dict[int, str] | None = None) -> dict[int, str]:
    """Clip id -> group label: clips sharing a group key or an extra label (a near-duplicate cluster) are joined,
    transitively. The label is the component's smallest group key, with the number of linked keys if several.

    >>> split_groups({1: "camera:A", 2: "camera:B", 3: "camera:C"}, {1: "dup0", 2: "dup0"})
    {1: 'camera:A (+1 linked)', 2: 'camera:A (+1 linked)', 3: 'camera:C'}
    """
    forest = _UnionFind()
    for clip_id, key in group_keys.items():
        forest.union(("clip", clip_id), ("key", key))
    for clip_id, label in (extra_groups or {}).items():
        if clip_id in group_keys and label is not None:
            forest.union(("clip", clip_id), ("extra", str(label)))
    members: dict[Any, set[str]] = {}
    for clip_id, key in group_keys.items():
        members.setdefault(forest.find(("clip", clip_id)), set()).add(key)
    labels = {}
    for root, keys in members.items():
        first = min(keys)
        labels[root] = first if len(keys) == 1 else f"{first} (+{len(keys) - 1} linked)"
    return {clip_id: labels[forest.find(("clip", clip_id))] for clip_id in group_keys}


def _install_triggers(project: Project) -> None:
    if project.engine.dialect.name != "sqlite":
        return
    with project.write() as session:
        for statement in _FROZEN_TRIGGERS:
            session.connection().exec_driver_sql(statement)


def current_split(project: Project) -> dict[int, LedgerEntry]:
    """The ledger as it stands: clip id -> entry. A frozen entry wins over any draft; the first frozen one counts."""
    with project.session() as session:
        rows = session.scalars(select(SplitEntry).order_by(desc(SplitEntry.frozen), SplitEntry.id)).all()
    entries: dict[int, LedgerEntry] = {}
    for row in rows:
        entries.setdefault(row.clip_id, LedgerEntry(row.clip_id, row.split, row.dataset_version, bool(row.frozen)))
    return entries


def _stratify_fields(project: Project, stratify: Sequence[str] | str | None) -> list[str]:
    rubric = project.rubric
    if stratify is None:
        return rubric.stratify_fields
    names = [s.strip() for s in stratify.split(",")] if isinstance(stratify, str) else list(stratify)
    names = [n for n in names if n]
    for name in names:
        if name not in rubric.field_map:
            raise CliptuneError(f"--stratify {name}: the rubric has no such field (fields: "
                                f"{', '.join(rubric.field_map)})")
        if rubric.field_map[name].type == "text":
            raise CliptuneError(f"--stratify {name}: a free-text field has no classes; stratify on a choice, "
                                "ordinal or integer field")
    return names


def dataset_version(assignment: dict[int, str], clip_sha: dict[int, str], rubric_version: str) -> str:
    """A short hash of who is on which side: the same data and split give the same version."""
    digest = hashlib.sha256(rubric_version.encode())
    for clip_id in sorted(assignment, key=lambda c: clip_sha[c]):
        digest.update(f"{clip_sha[clip_id]}:{assignment[clip_id]}\n".encode())
    return digest.hexdigest()[:12]


def ledger_version(project: Project, ledger: dict[int, LedgerEntry] | None = None) -> str:
    """The dataset version of the ledger as it stands, over every clip with a side (frozen or draft).

    :func:`split_project` hashes the same set when it stamps its rows (the frozen clips plus the gold clips it
    placed are exactly what the ledger holds afterwards), so this is the latest split's version; an export reports
    it too. Older frozen rows keep the version of the split that froze them."""
    ledger = current_split(project) if ledger is None else ledger
    with project.session() as session:
        shas = {row.id: row.sha256 for row in session.execute(select(Clip.id, Clip.sha256))}
    return dataset_version({c: e.split for c, e in ledger.items() if c in shas}, shas, project.rubric_version)


def split_project(
    project: Project,
    *,
    test_size: float = 0.2,
    stratify: Sequence[str] | str | None = None,
    random_state: int = 0,
    freeze: bool = False,
    policy: str = "unanimous",
    extra_groups: dict[int, str] | None = None,
) -> SplitResult:
    """Draw (or extend) the held-out split of every clip with a gold answer and write it to the ledger.

    Frozen entries keep their side. A clip of a group that has a frozen clip joins that side; the other new
    groups are placed so that the whole split (frozen and new) keeps ``test_size`` and the class proportions of
    the ``stratify`` fields (default: the rubric's ``stratify`` fields). ``extra_groups`` (clip id -> cluster
    label, e.g. near-duplicate clusters) is united with the clips' group keys. ``freeze=True`` freezes the result.
    """
    if not isinstance(test_size, int | float) or not 0.0 < float(test_size) < 1.0:
        raise CliptuneError(f"--test-size must be a share between 0 and 1 (e.g. 0.15), got {test_size}")
    fields = _stratify_fields(project, stratify)
    resolution = resolve(project, policy)
    with project.session() as session:
        clip_rows = session.execute(select(Clip.id, Clip.group_key, Clip.sha256)).all()
    group_keys = {row.id: row.group_key for row in clip_rows}
    clip_sha = {row.id: row.sha256 for row in clip_rows}
    groups = split_groups(group_keys, extra_groups)
    ledger = current_split(project)
    frozen = {clip_id: entry.split for clip_id, entry in ledger.items() if entry.frozen and clip_id in groups}

    # Frozen sides per group, from every frozen clip (with a gold answer today or not).
    group_side: dict[str, set[str]] = {}
    for clip_id, side in frozen.items():
        group_side.setdefault(groups[clip_id], set()).add(side)
    conflicts = {group: sides for group, sides in group_side.items() if len(sides) > 1}
    if conflicts:
        examples = sorted(conflicts)[:5]
        raise CliptuneError(
            f"the frozen split leaks: {len(conflicts)} group(s) now hold frozen clips on both sides "
            f"({'; '.join(examples)}), because new group keys or near-duplicate clusters link them. Frozen clips "
            "are never moved: take the train-side clips of these groups out of training, or split without the "
            "linking clusters"
        )

    gold_ids = sorted(resolution.gold)
    if not gold_ids:
        raise CliptuneError(
            f"nothing to split: no clip has a gold answer yet ({len(resolution.needs_review)} need review, "
            f"{resolution.unlabelled} unlabelled); label clips or resolve disagreements first"
        )
    y = np.array([[str(resolution.gold[c].fields.get(name)) for name in fields] or ["all"] for c in gold_ids],
                 dtype=object)
    clip_groups = np.array([groups[c] for c in gold_ids], dtype=object)
    fixed = np.full(len(gold_ids), UNASSIGNED, dtype=np.int64)
    for index, clip_id in enumerate(gold_ids):
        sides = group_side.get(groups[clip_id])
        if clip_id in frozen:
            fixed[index] = TEST if frozen[clip_id] == "test" else TRAIN
        elif sides:
            fixed[index] = TEST if "test" in sides else TRAIN
    try:
        held_out = stratified_group_split(y, clip_groups.astype(str), test_size=float(test_size),
                                          random_state=random_state, fixed=fixed)
    except ValueError as exc:
        raise CliptuneError(f"cannot split: {exc}") from None

    if not held_out.any() and "test" not in frozen.values():
        raise CliptuneError(
            f"the split held out nothing: {len(set(clip_groups.tolist()))} group(s) cannot be divided to keep the "
            f"class proportions of {', '.join(fields) or 'the clips'} (each class lives in too few groups); add "
            "clips from more sources, or stratify on fewer fields (--stratify '' for none)"
        )
    assignment = {c: ("test" if h else "train") for c, h in zip(gold_ids, held_out.tolist(), strict=True)}
    moved = [c for c in frozen if c in assignment and assignment[c] != frozen[c]]
    if moved:  # the core keeps fixed groups; this guards the promise even against a bug there
        raise AssertionError(f"split would move frozen clips {moved[:5]}; nothing was written")
    full = {**assignment, **frozen}
    version = dataset_version(full, clip_sha, project.rubric_version)
    new_ids = [c for c in gold_ids if c not in frozen]

    if ledger:  # the earlier split is replaced (a draft) or extended (a re-freeze): keep a copy first
        from curation.records.maintenance import automatic_backup

        automatic_backup(project, "refreeze" if freeze and frozen else "split")
    _install_triggers(project)
    with project.write() as session:
        # The write lock is held from here: a split that froze clips since we read the ledger wins, this one stops.
        frozen_now = set(session.scalars(select(SplitEntry.clip_id).where(SplitEntry.frozen.is_(True))))
        if frozen_now != set(frozen) | {c for c in frozen_now if c not in groups}:
            raise CliptuneError("another split froze clips while this one ran; nothing was written — run it again")
        session.execute(delete(SplitEntry).where(SplitEntry.frozen.is_(False)))
        if new_ids:  # plain rows: 100,000 ORM objects cost seconds under the write lock
            created = utcnow()
            session.execute(insert(SplitEntry), [{"clip_id": c, "split": assignment[c], "dataset_version": version,
                                                  "frozen": freeze, "created_at": created} for c in new_ids])
        params = {"test_size": float(test_size), "stratify": fields, "random_state": random_state, "policy": policy,
                  "freeze": freeze, "dataset_version": version, "new": len(new_ids), "kept_frozen": len(frozen),
                  "extra_groups": len(extra_groups or {})}
        session.add(Event(action="split", detail=params))

    report = _report(y, fields, clip_groups, held_out, full, groups)
    report.update(
        dataset_version=version, test_size=float(test_size), stratify=fields, random_state=random_state,
        policy=policy, frozen_now=freeze, all_frozen=freeze or (bool(frozen) and not new_ids),
        newly_assigned=len(new_ids),
        kept_frozen=len(frozen), frozen_without_gold=len([c for c in frozen if c not in resolution.gold]),
        groups=len(set(clip_groups.tolist())), extra_group_clips=len(extra_groups or {}),
        left_out={"needs_review": len(resolution.needs_review), "unlabelled": resolution.unlabelled,
                  "invalid_answers": resolution.invalid_answers},
    )
    return SplitResult(assignment=assignment, groups={c: groups[c] for c in gold_ids}, dataset_version=version,
                       report=report)


def _report(y: np.ndarray, fields: list[str], clip_groups: np.ndarray, held_out: np.ndarray,
            full: dict[int, str], groups: dict[int, str]) -> dict[str, Any]:
    per_class: dict[str, Any] = {}
    worst = 0.0
    base: dict[str, Any] = {}
    for column, name in enumerate(fields or ["all"]):
        base = split_report(y[:, column], clip_groups, held_out)
        if fields:
            per_class[name] = base["per_class"]
        worst = max(worst, base["max_proportion_deviation"])
    # Straddling is counted over every ledger clip, frozen ones without a gold answer included.
    sides: dict[str, set[str]] = {}
    for clip_id, side in full.items():
        sides.setdefault(groups[clip_id], set()).add(side)
    return {
        "train": base["train"], "test": base["test"], "test_share": base["test_share"], "per_class": per_class,
        "max_proportion_deviation": round(worst, 6),
        "groups_straddling": sum(1 for s in sides.values() if len(s) > 1),
    }


def last_split_params(project: Project) -> dict[str, Any] | None:
    """The parameters of the latest split (from the event log): how the held-out set was drawn."""
    with project.session() as session:
        row = session.scalars(select(Event).where(Event.action == "split").order_by(desc(Event.id)).limit(1)).first()
    return dict(row.detail) if row is not None else None
