"""Balance: class counts per stratifying field, and classes too rare for a useful held-out set.

A held-out set says something about a class only if it holds a few examples of it. With the default held-out
share ``test_size=0.2`` and at least ``min_test=5`` held-out examples per class, a class needs
``min_count = ceil(min_test / test_size) = 25`` gold-labelled clips; below that it is flagged with how many more
are needed. A class seen in one group only (one camera, one patient) is flagged too: a group-aware split cannot
put it on both sides. A rubric choice with no gold-labelled clip at all is flagged as absent.

Example::

    result = check_balance(project)
    result.flagged[0]["message"]
    # "event=INTRUSION: 9 gold-labelled clips; a 20% held-out set would hold about 2 — label at least 16 more
    #  (25 for 5 held out)"
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from curation.audit.result import AuditInputs, AuditResult, inputs_of
from curation.errors import CliptuneError

if TYPE_CHECKING:
    from curation.records.store import Project

TEST_SIZE = 0.2
MIN_TEST = 5


def _clips(count: int) -> str:
    return f"{count} gold-labelled clip{'' if count == 1 else 's'}"


def class_findings(counts: dict[str, int], groups: dict[str, set[str]], *, field: str, choices: list[str],
                   rare: list[str], min_count: int, test_size: float, min_test: int) -> list[dict[str, Any]]:
    """Findings for one field from its class counts and the groups each class occurs in (pure function)."""
    findings = []
    for value in choices:
        count = counts.get(value, 0)
        declared = " (a rare event in the rubric)" if value in rare else ""
        if count == 0:
            findings.append({"kind": "absent", "field": field, "value": value, "count": 0, "needed": min_count,
                             "message": f"{field}={value}{declared}: no gold-labelled clip — label at least "
                                        f"{min_count} ({min_test} held out at a {test_size:.0%} held-out share)"})
            continue
        if count < min_count:
            needed = min_count - count
            findings.append({"kind": "rare", "field": field, "value": value, "count": count, "needed": needed,
                             "message": f"{field}={value}{declared}: {_clips(count)}; a "
                                        f"{test_size:.0%} held-out set would hold about {round(count * test_size)}"
                                        f" — label at least {needed} more ({min_count} for {min_test} held out)"})
        seen_in = sorted(groups.get(value, set()))
        if len(seen_in) == 1:
            which = "its only clip comes" if count == 1 else f"all {count} clips come"
            findings.append({"kind": "one_group", "field": field, "value": value, "count": count,
                             "groups": seen_in, "needed": None,
                             "message": f"{field}={value}: {which} from one group ({seen_in[0]}); "
                                        "a group-aware split cannot put it on both sides — label it in other groups"})
    return findings


def check_balance(
    source: Project | AuditInputs,
    *,
    fields: list[str] | None = None,
    test_size: float = TEST_SIZE,
    min_test: int = MIN_TEST,
    min_count: int | None = None,
) -> AuditResult:
    """Class counts and rare-class findings per stratifying field; see the module docstring.

    Per-clip score: for the clip's rarest flagged class, how far below ``min_count`` it is (1 - count/min_count),
    0 when none of its classes is flagged.
    """
    if not 0 < test_size < 1:
        raise CliptuneError(f"test_size must be a share between 0 and 1 (e.g. 0.2), got {test_size}")
    if min_test < 1:
        raise CliptuneError(f"min_test must be at least 1, got {min_test}")
    min_count = min_count if min_count is not None else math.ceil(min_test / test_size - 1e-9)
    if min_count < 1:
        raise CliptuneError(f"min_count must be at least 1, got {min_count}")
    inputs = inputs_of(source, features=False)
    if fields is None:
        fields, why = inputs.label_fields()
    else:
        unknown = [f for f in fields if f not in inputs.rubric.field_map or f not in inputs.labels.columns]
        if unknown:
            raise CliptuneError(f"fields {unknown} are not in the rubric; it has {list(inputs.rubric.field_map)}")
        why = "as asked"
    group_of = _groups(inputs)
    labels = inputs.labels
    per_field, flagged, scores = {}, [], {}
    for name in fields:
        rubric_field = inputs.rubric.field_map[name]
        column = labels[name].dropna().astype(str)
        counts = column.value_counts().to_dict()
        groups: dict[str, set[str]] = {}
        for clip_id, value in column.items():
            if clip_id in group_of:
                groups.setdefault(value, set()).add(group_of[clip_id])
        choices = rubric_field.choices or sorted(counts)
        findings = class_findings(counts, groups, field=name, choices=choices, rare=list(rubric_field.rare),
                                  min_count=min_count, test_size=test_size, min_test=min_test)
        flagged += findings
        present = [c for c in counts.values() if c > 0]
        per_field[name] = {
            "counts": {value: int(counts.get(value, 0)) for value in choices},
            "groups": {value: len(groups.get(value, set())) for value in choices},
            "rare_in_rubric": list(rubric_field.rare),
            "imbalance": round(max(present) / min(present), 3) if present else None,
        }
        short = {f["value"] for f in findings if f["kind"] == "rare"}
        for clip_id, value in column.items():
            if value in short:
                scores[int(clip_id)] = max(scores.get(int(clip_id), 0.0), 1 - counts[value] / min_count)
    for clip_id in labels.index:
        scores.setdefault(int(clip_id), 0.0)
    summary = {"fields": fields, "fields_chosen": why, "labelled": len(labels), "unlabelled": inputs.unlabelled,
               "needs_review": inputs.needs_review, "label_sources": inputs.label_sources, "min_count": min_count,
               "test_size": test_size, "min_test": min_test, "flagged": len(flagged)}
    return AuditResult("balance", scores=scores, flagged=flagged, summary=summary, details={"fields": per_field})


def _groups(inputs: AuditInputs) -> dict[int, str]:
    """Group key per clip id: the inputs' own map, else the feature table's ``group`` column."""
    if inputs.groups:
        return {int(i): str(g) for i, g in inputs.groups.items()}
    if inputs.features is not None and "group" in inputs.features:
        return {int(i): str(g) for i, g in inputs.features["group"].items()}
    return {}
