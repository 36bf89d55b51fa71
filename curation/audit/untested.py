"""What an audit could not test, and why: read off the checks' results so that no report says "0 flagged" when
nothing was looked at.

A check that finds nothing and a check that could not look are different news for a data lead: the first is a
finding, the second a to-do. Every part left untested becomes one entry of the report's ``"untested"`` list::

    {"check": "shortcuts", "what": "event=TAILGATING", "why": "2 clips of TAILGATING and 10 others: ...",
     "clips": [{"clip": 4, "file": "/data/door/c4.mp4", "error": "..."}]}     # "clips" only where clips are named

Reasons covered: no gold answers (or none with readable media), too few clips of a class, one clip (nothing to
compare), a feature that is the same for every clip, clips without a gold answer, media files that are missing or
cannot be decoded (named by file), no answers at all, no split yet (leakage). A check may also list its own
untested parts under an ``"untested"`` key of its result (dicts with ``what`` and ``why``); they are passed on.

Clips are named by id and source file: :func:`clip_files` maps every clip of the project in one query.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from curation.records.store import Clip, Project

# the checks that read pictures: a clip that cannot be read is not in them
DECODED_CHECKS = ("shortcuts", "local_shortcuts", "duplicates")


def clip_files(project: Project) -> dict[int, str]:
    """Clip id -> the source file it was ingested from (absolute where the ingest root was), every clip, one query."""
    with project.session() as session:
        rows = session.execute(select(Clip.id, Clip.root, Clip.path)).all()
    return {clip_id: str(Path(root) / path) for clip_id, root, path in rows}


def named(clip_ids: list[int], files: dict[int, str]) -> list[dict[str, Any]]:
    """``[{"clip": id, "file": path}]``; a clip the project no longer has gets ``file`` None."""
    return [{"clip": int(clip_id), "file": files.get(int(clip_id))} for clip_id in clip_ids]


def media_failures(project: Project, failed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Clips whose pictures could not be read, each ``{"clip", "file", "error", "missing"}``: ``missing`` when neither
    the source file nor the project's proxy of it is on disk (deleted or moved), else the decoder's error stands."""
    ids = [int(item["clip"]) for item in failed if "clip" in item]
    if not ids:
        return []
    with project.session() as session:
        rows = {row.id: row for row in session.execute(
            select(Clip.id, Clip.root, Clip.path, Clip.proxy_path).where(Clip.id.in_(ids))).all()}
    out = []
    for item in failed:
        row = rows.get(int(item.get("clip", -1)))
        source = Path(row.root) / row.path if row is not None else None
        proxy = project.path / row.proxy_path if row is not None and row.proxy_path else None
        missing = source is not None and not source.exists() and (proxy is None or not proxy.exists())
        out.append({"clip": int(item["clip"]), "file": str(source) if source is not None else None,
                    "error": str(item.get("error", "")), "missing": missing})
    return out


def _media_parts(check: str, failures: list[dict[str, Any]]) -> list[dict[str, Any]]:
    parts = []
    missing = [f for f in failures if f["missing"]]
    broken = [f for f in failures if not f["missing"]]
    if missing:
        parts.append({"check": check, "what": f"{_n(len(missing), 'clip')} whose media file is missing",
                      "why": "neither the source file nor its proxy is on disk (deleted or moved): nothing to decode",
                      "clips": [{k: f[k] for k in ("clip", "file", "error")} for f in missing]})
    if broken:
        parts.append({"check": check, "what": f"{_n(len(broken), 'clip')} whose media cannot be decoded",
                      "why": "the file is unreadable (damaged, truncated or not a video); the decoder's error is "
                             "given per clip",
                      "clips": [{k: f[k] for k in ("clip", "file", "error")} for f in broken]})
    return parts


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _without_gold(labels: dict[str, Any]) -> str:
    return f"{labels.get('unlabelled', 0)} unlabelled, {labels.get('needs_review', 0)} waiting for review"


def _shortcut_parts(check: dict[str, Any], labels: dict[str, Any], n_clips: int, failures: list) -> list[dict]:
    summary = check.get("summary", {})
    parts: list[dict[str, Any]] = []
    if not summary.get("fields"):
        return [{"check": "shortcuts", "what": "every label",
                 "why": "the rubric has no choice or ordinal field to predict (and none marked stratify: true)"}]
    labelled = summary.get("clips_labelled", 0)
    if labelled == 0:
        if labels.get("gold", 0) == 0:
            why = f"no clip has a gold answer yet ({_without_gold(labels)})"
        else:
            why = (f"none of the {labels['gold']} clips with a gold answer has readable media "
                   "(see the clips listed below)" if failures else
                   f"none of the {labels['gold']} clips with a gold answer has features")
        parts.append({"check": "shortcuts", "what": "the whole check: no feature was tested against any label",
                      "why": why})
    else:
        features: dict[str, list[str]] = {}  # reason -> features: one line for the eleven of a one-clip project
        for item in check.get("skipped", []):
            if "value" in item:
                parts.append({"check": "shortcuts", "what": f"{item.get('field')}={item['value']}",
                              "why": f"too few clips: {item.get('reason', '')}"})
            elif "feature" in item:
                features.setdefault(str(item.get("reason", "")), []).append(str(item["feature"]))
        for reason, names in features.items():
            parts.append({"check": "shortcuts", "what": f"feature{'s' if len(names) > 1 else ''} {', '.join(names)}",
                          "why": f"{reason}: {'they' if len(names) > 1 else 'it'} cannot tell classes apart"})
        if summary.get("tested", 0) == 0 and labelled:
            parts.append({"check": "shortcuts", "what": "every class of every field",
                          "why": f"{_n(labelled, 'clip')} with a gold answer and readable media: too few to test"})
        rest = n_clips - labels.get("gold", 0)
        if rest > 0:
            parts.append({"check": "shortcuts", "what": f"{_n(rest, 'clip')} without a gold answer",
                          "why": f"a clip is tested only with its gold answer: {_without_gold(labels)}"})
    return parts + _media_parts("shortcuts", failures)


def _duplicate_parts(check: dict[str, Any], n_clips: int, failures: list) -> list[dict[str, Any]]:
    summary = check.get("summary", {})
    compared = summary.get("compared", n_clips - len(failures))
    parts: list[dict[str, Any]] = []
    if compared < 2:
        why = ("the project has no clips" if n_clips == 0 else
               "the project has one clip: there is nothing to compare it with" if n_clips == 1 else
               f"{_n(compared, 'clip')} of {n_clips} could be read: at least two are needed to compare")
        parts.append({"check": "duplicates", "what": "the whole check: no pair of clips was compared", "why": why})
    if summary.get("split_clips", 1) == 0 and compared >= 2:
        parts.append({"check": "duplicates", "what": "leakage across the split",
                      "why": "no split in the ledger yet (`cliptune split`): checked once a split exists"})
    return parts + _media_parts("duplicates", failures)


def _balance_parts(check: dict[str, Any], labels: dict[str, Any], n_clips: int) -> list[dict[str, Any]]:
    summary = check.get("summary", {})
    if not summary.get("fields"):
        return [{"check": "balance", "what": "every label",
                 "why": "the rubric has no choice or ordinal field to count (and none marked stratify: true)"}]
    labelled = summary.get("labelled", labels.get("gold", 0))
    if labelled == 0:
        return [{"check": "balance", "what": "class counts",
                 "why": f"no clip has a gold answer yet ({_without_gold(labels)}): every class counts 0"}]
    rest = n_clips - labelled
    if rest > 0:
        return [{"check": "balance", "what": f"{_n(rest, 'clip')} without a gold answer",
                 "why": f"only gold answers are counted: {_without_gold(labels)}"}]
    return []


def _conformance_parts(check: dict[str, Any]) -> list[dict[str, Any]]:
    checked = check.get("summary", {}).get("checked", {})
    if checked and not any(checked.values()):
        return [{"check": "conformance", "what": "the whole check: no answer was checked against the rubric",
                 "why": "no answers or reviews are stored yet"}]
    return []


def untested_parts(report: dict[str, Any], project: Project, files: dict[int, str]) -> list[dict[str, Any]]:
    """Every part of every check in ``report`` (see :func:`curation.audit.report.audit_report`) that was not tested,
    with why; clips named by id and file. Each check's own ``"untested"`` entries are included as they are."""
    checks = report.get("checks", {})
    labels = report.get("labels", {})
    n_clips = len(files)
    failed = (report.get("features") or {}).get("failed") or []
    failures = media_failures(project, failed) if set(DECODED_CHECKS) & set(checks) else []
    parts: list[dict[str, Any]] = []
    for name, check in checks.items():
        if name in ("shortcuts", "local_shortcuts"):  # one-feature rules both: the same parts can go untested
            parts += [{**part, "check": name} for part in _shortcut_parts(check, labels, n_clips, failures)]
        elif name == "duplicates":
            parts += _duplicate_parts(check, n_clips, failures)
        elif name == "balance":
            parts += _balance_parts(check, labels, n_clips)
        elif name == "conformance":
            parts += _conformance_parts(check)
        for own in check.get("untested", []) if isinstance(check.get("untested"), list) else []:
            if isinstance(own, dict) and "what" in own:
                parts.append({"check": name, **own})
    return parts
