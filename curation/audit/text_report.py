"""The audit report as lines of plain text for a terminal (``cliptune audit`` without ``--json``).

Each check gets its headline, its first findings, and then every part it could not test with why, clips named by
id and file — so "0 flagged" never stands alone when nothing was looked at. Long lists are cut at ``limit`` lines
with a count of the rest (the JSON and HTML reports hold them all).

Example::

    for line in text_lines(audit_report(project)):
        print(line)
    # shortcuts: 0 flagged — nothing could be tested (see "not tested" below)
    #   not tested: the whole check: no feature was tested against any label — no clip has a gold answer yet (...)
"""

from __future__ import annotations

from typing import Any


def _clip_name(clip_id: Any, files: dict[str, str]) -> str:
    file = files.get(str(clip_id))
    return f"{clip_id} ({file})" if file else str(clip_id)


def _headline(name: str, check: dict[str, Any], gaps: list[dict[str, Any]]) -> str:
    summary = check.get("summary", {})
    if name == "duplicates":
        compared = summary.get("compared", "?")
        head = (f"duplicates: {len(check.get('clusters', []))} clusters ({len(check['flagged'])} clips), "
                f"{len(check.get('leakage', []))} leaks among {compared} clip{'' if compared == 1 else 's'} compared")
    else:
        head = f"{name}: {len(check['flagged'])} flagged"
    if name in ("shortcuts", "local_shortcuts"):
        tested = summary.get("tested", 0)
        return head + (f" of {tested} feature/class combinations tested" if tested
                       else " — nothing could be tested (see \"not tested\" below)")
    if gaps:
        head += f"; {len(gaps)} part{'s' if len(gaps) > 1 else ''} not tested"
    return head


def _findings(name: str, check: dict[str, Any], files: dict[str, str]) -> list[str]:
    if name == "duplicates":
        return ([leak["message"] for leak in check.get("leakage", [])]
                + ["near-duplicates: " + ", ".join(_clip_name(c, files) for c in cluster)
                   for cluster in check.get("clusters", [])])
    return [item["message"] if isinstance(item, dict) and "message" in item else str(item)
            for item in check["flagged"]]


def _short(error: str, width: int = 160) -> str:
    """A decoder's error on one line, cut (the JSON keeps it whole)."""
    line = " ".join(str(error).split())
    return line if len(line) <= width else line[: width - 1] + "…"


def _cut(lines: list[str], limit: int, indent: str) -> list[str]:
    if len(lines) <= limit:
        return lines
    return lines[:limit] + [f"{indent}… and {len(lines) - limit} more (see --json or --html)"]


def text_lines(report: dict[str, Any], *, limit: int = 10) -> list[str]:
    """The report (:func:`curation.audit.report.audit_report`) as plain lines: labels, then per check its headline,
    findings and untested parts (every part is stated; clip lists within a part are cut at ``limit``)."""
    labels = report["labels"]
    by_source = ", ".join(f"{k} {v}" for k, v in sorted(labels.get("by_source", {}).items())) or "-"
    lines = [f"labels: {labels['gold']} gold answers ({by_source}), {labels['needs_review']} need review, "
             f"{labels['unlabelled']} unlabelled"]
    files = report.get("clip_files", {})
    untested = report.get("untested", [])
    for name, check in report["checks"].items():
        gaps = [part for part in untested if part["check"] == name]
        lines.append(_headline(name, check, gaps))
        lines += _cut([f"  {line}" for line in _findings(name, check, files)], limit, "  ")
        for part in gaps:
            lines.append(f"  not tested: {part['what']} — {part['why']}")
            clips = [f"    clip {c['clip']} {c.get('file') or '(file unknown)'}"
                     + (f": {_short(c['error'])}" if c.get("error") else "") for c in part.get("clips") or []]
            lines += _cut(clips, limit, "    ")
    return lines
