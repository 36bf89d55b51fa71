"""Conformance: answers that do not fit the rubric the model will be trained and scored with.

Checked against the project's current rubric, because that is what export, training and evaluation use:

- **gold** answers (:func:`curation.review.resolve.resolve`, majority policy) and the latest **review** of each clip:
  they must pass the rubric's validation, and ``parse(render(fields))`` must give the fields back;
- current submitted **annotations**: the same, and their stored output text must parse back to their fields.
  :func:`curation.review.resolve.resolve` silently leaves invalid answers out of the gold; here they are named.

An answer made under an older rubric version is valid if it still fits the current one; its version is shown.

Example::

    result = check_conformance(project)
    result.flagged   # [{"clip": 7, "source": "annotation", "user": "ana", "problems": ["persons: -1 is below ..."],
                     #   "message": "clip 7, ana's annotation: persons: -1 is below the minimum 0"}]
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from curation.audit.result import AuditResult
from curation.errors import CliptuneError
from curation.records.store import Project, Review, User
from curation.rubric import Rubric


def answer_problems(rubric: Rubric, fields: dict[str, Any] | None, output_text: str | None) -> list[str]:
    """Every way one answer fails the rubric: validation, the render -> parse round trip, its stored text."""
    if not isinstance(fields, dict):
        problems = ["no fields stored"]
        if output_text is not None and rubric.try_parse(output_text) is None:
            problems.append(f"its output text does not parse: {output_text[:120]!r}")
        return problems
    problems = rubric.validate_fields(fields)
    if problems:
        return problems
    normalised = rubric.normalise(fields)
    rendered = rubric.render(normalised)
    back = rubric.try_parse(rendered)
    if back != normalised:
        problems.append(f"does not round-trip: it renders as {rendered[:120]!r}, which parses back as {back}")
    if output_text is not None:
        parsed = rubric.try_parse(output_text)
        if parsed is None:
            problems.append(f"its output text does not parse: {output_text[:120]!r}")
        elif parsed != normalised:
            changed = sorted(k for k in normalised if parsed.get(k) != normalised.get(k))
            problems.append(f"its output text {output_text[:120]!r} says something else for {', '.join(changed)}")
    return problems


def check_conformance(project: Project) -> AuditResult:
    """Gold answers, reviews and current annotations that fail the rubric; see the module docstring.

    Per-clip score: 1 when some answer of the clip fails (its gold answer included), else 0.
    """
    if not isinstance(project, Project):
        raise CliptuneError("the conformance check reads every stored answer: pass the Project")
    from curation.records.annotations import current_annotations
    from curation.review.resolve import resolve

    rubric = project.rubric
    current = project.rubric_version
    flagged: list[dict[str, Any]] = []
    checked = {"gold": 0, "review": 0, "annotation": 0}

    def record(clip_id: int, source: str, who: str | None, version: str | None, problems: list[str], **ids) -> None:
        if not problems:
            return
        owner = f"{who}'s {source}" if who else source
        old = f" (made under rubric {version}, current {current})" if version and version != current else ""
        flagged.append({"clip": clip_id, "source": source, "user": who, "rubric_version": version, **ids,
                        "problems": problems, "message": f"clip {clip_id}, {owner}{old}: {'; '.join(problems)}"})

    for clip_id, gold in sorted(resolve(project, policy="majority").gold.items()):
        checked["gold"] += 1
        record(clip_id, "gold", None, None, answer_problems(rubric, gold.fields, gold.output_text))
    with project.session() as session:
        latest = select(func.max(Review.id)).group_by(Review.clip_id)
        reviews = session.execute(select(Review, User.name).join(User, User.id == Review.reviewer_id)
                                  .where(Review.id.in_(latest)).order_by(Review.clip_id)).all()
    for review, reviewer in reviews:
        checked["review"] += 1
        record(review.clip_id, "review", reviewer, review.rubric_version,
               answer_problems(rubric, review.fields, review.output_text), review_id=review.id)
    for answer in current_annotations(project):
        if answer.status != "submitted":
            continue
        checked["annotation"] += 1
        record(answer.clip_id, "annotation", answer.user, answer.rubric_version,
               answer_problems(rubric, answer.fields, answer.output_text), annotation_id=answer.id)
    failing: dict[str, int] = {}
    for item in flagged:
        failing[item["source"]] = failing.get(item["source"], 0) + 1
    bad_clips = {item["clip"] for item in flagged}
    summary = {"rubric_version": current, "checked": checked, "failing": failing, "clips_failing": len(bad_clips)}
    return AuditResult("conformance", scores={clip_id: 1.0 for clip_id in bad_clips}, flagged=flagged,
                       summary=summary, details={})
