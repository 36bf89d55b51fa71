"""The shape every audit check returns, and the inputs the checks share.

Like cleanlab's issue managers, but plain dataclasses: a check is a function ``check_xxx(project_or_inputs, ...)
-> AuditResult``, and adding a check means adding one module. ``AuditResult.scores`` has one number per clip id
(0 = no issue, up to 1 = most implicated; each check documents its scale), ``flagged`` lists clip ids or findings
(dicts with a ``message``), ``summary`` holds the counts and the settings used, ``details`` everything else.

Example::

    inputs = AuditInputs.from_project(project)       # gold labels (majority policy) and the feature table
    result = check_balance(inputs)
    result.to_dict()    # {"name": "balance", "summary": {...}, "flagged": [...], ...details, "scores": {...}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from curation.media.features import FeatureReport
    from curation.records.store import Project
    from curation.rubric import Rubric

RESERVED_KEYS = ("name", "summary", "flagged", "scores")


@dataclass
class AuditResult:
    name: str
    scores: dict[int, float] = field(default_factory=dict)
    flagged: list[Any] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        clash = [key for key in self.details if key in RESERVED_KEYS]
        if clash:
            raise ValueError(f"details keys {clash} clash with the result's own keys {RESERVED_KEYS}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: details are lifted to the top level next to name, summary and flagged."""
        return {
            "name": self.name,
            "summary": self.summary,
            "flagged": self.flagged,
            **self.details,
            "scores": {str(clip_id): round(float(score), 6) for clip_id, score in sorted(self.scores.items())},
        }


@dataclass
class AuditInputs:
    """What the checks read: the rubric, gold labels per clip and (for shortcuts) the nuisance feature table.

    ``labels`` is a DataFrame indexed by clip id with one column per rubric field, holding the gold answer of
    :func:`curation.review.resolve.resolve` with ``policy="majority"`` (adjudicated > unanimous > majority); clips
    without a gold answer are not in it. ``features`` is :func:`curation.media.features.feature_table` or None;
    ``groups`` maps every clip id to its group key.
    """

    rubric: Rubric
    labels: pd.DataFrame
    features: pd.DataFrame | None = None
    label_sources: dict[str, int] = field(default_factory=dict)
    unlabelled: int = 0
    needs_review: int = 0
    groups: dict[int, str] = field(default_factory=dict)  # clip id -> group key (camera, session, patient)

    @classmethod
    def from_project(cls, project: Project, *, features: bool = True, workers: int | None = None,
                     feature_report: FeatureReport | None = None) -> AuditInputs:
        """Gold labels and, with ``features``, the feature table (from ``feature_report`` if given, see
        :func:`curation.media.features.feature_table`)."""
        import pandas as pd
        from sqlalchemy import select

        from curation.records.store import Clip
        from curation.review.resolve import resolve

        resolution = resolve(project, policy="majority")
        rubric = project.rubric
        names = [f.name for f in rubric.fields]
        rows = {clip_id: [gold.fields.get(name) for name in names] for clip_id, gold in resolution.gold.items()}
        labels = pd.DataFrame.from_dict(rows, orient="index", columns=names) if rows else pd.DataFrame(columns=names)
        labels.index.name = "clip_id"
        labels = labels.sort_index()
        table = None
        if features:
            from curation.media.features import feature_table

            table = feature_table(project, workers=workers, report=feature_report)
        with project.session() as session:
            groups = dict(session.execute(select(Clip.id, Clip.group_key)).all())
        summary = resolution.summary()
        return cls(rubric=rubric, labels=labels, features=table, label_sources=summary["by_source"],
                   unlabelled=summary["unlabelled"], needs_review=summary["needs_review"], groups=groups)

    def label_fields(self) -> tuple[list[str], str]:
        """The fields the label checks look at: the rubric's stratifying fields, else every choice field."""
        stratify = self.rubric.stratify_fields
        if stratify:
            return stratify, "the rubric's stratifying fields"
        choices = [f.name for f in self.rubric.fields if f.type in ("choice", "ordinal")]
        return choices, "every choice and ordinal field (the rubric marks none with stratify: true)"


def inputs_of(source: Project | AuditInputs, *, features: bool = True, workers: int | None = None) -> AuditInputs:
    """The checks' entry: a project is read (and its features extracted) here; inputs pass through."""
    if isinstance(source, AuditInputs):
        return source
    from curation.records.store import Project

    if not isinstance(source, Project):
        raise TypeError(f"expected a Project or AuditInputs, got {type(source).__name__}")
    return AuditInputs.from_project(source, features=features, workers=workers)
