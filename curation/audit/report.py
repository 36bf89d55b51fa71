"""Run every audit check, as JSON (``cliptune audit --json``) or as one self-contained HTML page (``--html``).

The HTML report is a single file a data lead opens in a browser, offline: plots are inline SVG drawn here
(matplotlib is not a dependency), thumbnails are embedded as data URIs, and nothing is fetched from anywhere.

Example::

    report = audit_report(project)   # {"project", "labels", "features", "checks": {"shortcuts": {...}, ...},
                                     #  "untested": [{"check", "what", "why", "clips"?}], "clip_files": {id: file}}
    write_html(report, "audit.html", project)

Nothing is hidden: ``untested`` lists every part of every check that could not be tested and why (no gold answers,
too few clips of a class, one clip, media files missing or unreadable — by file name; see
:mod:`curation.audit.untested`), and clips are named by file beside their id (``clip_files``, each check's
``flagged_clips``, a ``file`` beside every failed or flagged clip).
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from curation.audit.balance import check_balance
from curation.audit.conformance import check_conformance
from curation.audit.duplicates import check_duplicates
from curation.audit.local_shortcuts import check_local_shortcuts
from curation.audit.result import AuditInputs
from curation.audit.shortcuts import check_shortcuts
from curation.audit.untested import clip_files, untested_parts
from curation.errors import CliptuneError
from curation.records.store import Clip, Project

CHECKS = ("shortcuts", "local_shortcuts", "duplicates", "conformance", "balance")
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def audit_report(project: Project, *, checks: tuple[str, ...] | list[str] = CHECKS, workers: int | None = None,
                 random_state: int = 0, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Every check's result (``AuditResult.to_dict()``) under ``"checks"``, with what labels were used.

    ``progress(done, total)`` is called as clips without cached features are decoded."""
    unknown = [c for c in checks if c not in CHECKS]
    if unknown:
        raise CliptuneError(f"unknown checks {unknown}; choose from {', '.join(CHECKS)}")
    from curation.media.features import extract_features

    decoding = {"shortcuts", "duplicates"} & set(checks)
    features = extract_features(project, workers=workers, progress=progress) if decoding else None
    inputs = AuditInputs.from_project(project, features="shortcuts" in checks, workers=workers,
                                      feature_report=features)
    results = {}
    for name in checks:
        if name == "shortcuts":
            results[name] = check_shortcuts(inputs, random_state=random_state)
        elif name == "local_shortcuts":
            results[name] = check_local_shortcuts(project, inputs=inputs, random_state=random_state, workers=workers)
        elif name == "duplicates":
            results[name] = check_duplicates(project, workers=workers, feature_report=features)
        elif name == "conformance":
            results[name] = check_conformance(project)
        else:
            results[name] = check_balance(inputs)
    files = clip_files(project)
    report = {
        "project": project.name,
        "path": str(project.path),
        "rubric": {"name": project.rubric.name, "version": project.rubric_version},
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "labels": {"used": "gold answers (adjudicated > unanimous > majority per field)", "gold": len(inputs.labels),
                   "by_source": inputs.label_sources, "needs_review": inputs.needs_review,
                   "unlabelled": inputs.unlabelled},
        "features": features.to_dict() if features is not None else None,
        "checks": {name: _with_files(result.to_dict(), files) for name, result in results.items()},
        "clip_files": {str(clip_id): path for clip_id, path in sorted(files.items())},
    }
    if report["features"] is not None:
        for item in report["features"].get("failed", []):
            item.setdefault("file", files.get(int(item["clip"])))
    report["untested"] = untested_parts(report, project, files)
    return report


def _with_files(check: dict[str, Any], files: dict[int, str]) -> dict[str, Any]:
    """Name clips by file as well as id, without renaming anything: ``flagged_clips`` (every clip the check scores
    above 0, highest first, as ``{"clip", "file", "score"}``) and a ``file`` beside each flagged item's ``clip``."""
    scored = sorted(((int(c), s) for c, s in check.get("scores", {}).items() if s > 0), key=lambda cs: (-cs[1], cs[0]))
    check["flagged_clips"] = [{"clip": c, "file": files.get(c), "score": s} for c, s in scored]
    for item in check.get("flagged", []):
        if isinstance(item, dict) and isinstance(item.get("clip"), int):
            item.setdefault("file", files.get(item["clip"]))
    return check


# -- SVG ---------------------------------------------------------------------------------------------------------


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def strip_plot(by_class: dict[str, list[float]], highlight: str, feature: str,
               bounds: dict[str, Any] | None = None, width: int = 640) -> str:
    """Dots of a numeric feature, one row per class, the flagged class in colour, the rule's bounds dashed."""
    values = [v for vs in by_class.values() for v in vs]
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    left, right, row = 170, 20, 26
    height = row * len(by_class) + 40

    def x(value: float) -> float:
        return left + (value - low) / span * (width - left - right)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{_esc(feature)} by class">']
    for index, (cls, vs) in enumerate(by_class.items()):
        y = 20 + index * row
        colour = "#d62728" if cls == highlight else "#7f7f7f"
        parts.append(f'<text x="{left - 8}" y="{y + 4}" text-anchor="end" font-size="12">{_esc(cls)} '
                     f'({len(vs)})</text>')
        for offset, value in enumerate(vs):
            jitter = ((offset * 7919) % 11 - 5) * 1.2
            parts.append(f'<circle cx="{x(value):.1f}" cy="{y + jitter:.1f}" r="3" fill="{colour}" '
                         'fill-opacity="0.6"/>')
    for key in ("low", "high"):
        if bounds and bounds.get(key) is not None:
            bx = x(bounds[key])
            parts.append(f'<line x1="{bx:.1f}" y1="8" x2="{bx:.1f}" y2="{height - 26}" stroke="#000" '
                         'stroke-dasharray="4 3"/>')
    axis_y = height - 14
    parts.append(f'<text x="{left}" y="{axis_y}" font-size="11">{low:.3g}</text>')
    parts.append(f'<text x="{width - right}" y="{axis_y}" font-size="11" text-anchor="end">{high:.3g}</text>')
    parts.append(f'<text x="{(left + width - right) / 2}" y="{axis_y}" font-size="11" text-anchor="middle">'
                 f'{_esc(feature)}</text></svg>')
    return "".join(parts)


def bar_chart(counts: dict[str, int], *, line_at: float | None = None, highlight: set[str] | None = None,
              width: int = 640, label: str = "") -> str:
    """Horizontal bars (one per key), optionally a dashed line at ``line_at`` (e.g. the minimum count)."""
    top = max(list(counts.values()) + [line_at or 0, 1])
    left, right, row = 150, 50, 22
    height = row * len(counts) + 30
    scale = (width - left - right) / top
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{_esc(label)}">']
    for index, (key, count) in enumerate(counts.items()):
        y = 8 + index * row
        colour = "#d62728" if highlight and key in highlight else "#1f77b4"
        parts.append(f'<text x="{left - 8}" y="{y + 13}" text-anchor="end" font-size="12">{_esc(key)}</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{count * scale:.1f}" height="{row - 6}" fill="{colour}"/>')
        parts.append(f'<text x="{left + count * scale + 4:.1f}" y="{y + 13}" font-size="12">{count}</text>')
    if line_at is not None:
        lx = left + line_at * scale
        parts.append(f'<line x1="{lx:.1f}" y1="2" x2="{lx:.1f}" y2="{height - 16}" stroke="#000" '
                     f'stroke-dasharray="4 3"/><text x="{lx:.1f}" y="{height - 4}" font-size="11" '
                     f'text-anchor="middle">minimum {line_at:g}</text>')
    parts.append("</svg>")
    return "".join(parts)


def stacked_bars(by_class: dict[str, dict[str, int]], highlight: str, width: int = 640) -> str:
    """Category counts per class as stacked bars (a categorical feature by class)."""
    categories = sorted({c for counts in by_class.values() for c in counts})
    colour = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(categories)}
    top = max(sum(counts.values()) for counts in by_class.values()) or 1
    left, right, row = 170, 20, 24
    height = row * len(by_class) + 26 + 16 * ((len(categories) + 3) // 4)
    scale = (width - left - right) / top
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">']
    for index, (cls, counts) in enumerate(by_class.items()):
        y, x = 8 + index * row, float(left)
        weight = "bold" if cls == highlight else "normal"
        parts.append(f'<text x="{left - 8}" y="{y + 13}" text-anchor="end" font-size="12" font-weight="{weight}">'
                     f'{_esc(cls)}</text>')
        for category in categories:
            size = counts.get(category, 0) * scale
            parts.append(f'<rect x="{x:.1f}" y="{y}" width="{size:.1f}" height="{row - 6}" '
                         f'fill="{colour[category]}"><title>{_esc(category)}: {counts.get(category, 0)}</title></rect>')
            x += size
    for index, category in enumerate(categories):
        lx, ly = left + (index % 4) * 120, 14 + row * len(by_class) + 16 * (index // 4)
        parts.append(f'<rect x="{lx}" y="{ly - 9}" width="10" height="10" fill="{colour[category]}"/>'
                     f'<text x="{lx + 14}" y="{ly}" font-size="11">{_esc(category)}</text>')
    parts.append("</svg>")
    return "".join(parts)


# -- HTML ------------------------------------------------------------------------------------------------------

STYLE = """body{font-family:system-ui,sans-serif;margin:2rem;max-width:72rem;color:#222}
h1{margin-bottom:.2rem}h2{border-bottom:1px solid #ccc;padding-bottom:.2rem;margin-top:2rem}
.muted{color:#666}.finding{margin:1rem 0 1.5rem}.flag{color:#b00;font-weight:600}.ok{color:#070;font-weight:600}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;font-size:.9rem}
.cluster{display:flex;gap:.5rem;flex-wrap:wrap;margin:.5rem 0}.cluster figure{margin:0;font-size:.8rem}
.cluster img{height:72px;display:block}"""


def _thumbnails(project: Project | None, clip_ids: list[int]) -> dict[int, tuple[str, str | None]]:
    """Clip id -> (path, data URI of its thumbnail or None)."""
    if project is None or not clip_ids:
        return {}
    from sqlalchemy import select

    with project.session() as session:
        clips = session.scalars(select(Clip).where(Clip.id.in_(clip_ids))).all()
    out = {}
    for clip in clips:
        uri = None
        thumb = project.path / clip.thumbnail_path if clip.thumbnail_path else None
        if thumb is not None and thumb.is_file():
            uri = "data:image/jpeg;base64," + base64.b64encode(thumb.read_bytes()).decode("ascii")
        out[clip.id] = (clip.path, uri)
    return out


def _shortcuts_html(check: dict[str, Any]) -> list[str]:
    summary = check["summary"]
    parts = [f"<p class='muted'>Score: {_esc(summary.get('score', ''))}. Chance is {summary.get('chance')}; "
             f"flagged at {summary.get('chance', 0.5) + summary.get('margin', 0):.2f} or more with a permutation "
             f"p-value of at most {summary.get('alpha')} ({summary.get('n_permutations')} shuffles, corrected for "
             f"testing every feature and class of a field). {summary.get('tested', 0)} combinations tested.</p>"]
    notes = sorted(set((summary.get("folds") or {}).values()))
    parts += [f"<p class='muted'>Folds: {_esc(note)}</p>" for note in notes]
    if not check["flagged"]:
        parts.append("<p class='ok'>No nuisance feature predicts a label beyond chance.</p>")
    for finding in check["flagged"]:
        parts.append(f"<div class='finding'><p class='flag'>{_esc(finding['message'])}</p>"
                     f"<p class='muted'>p = {finding['p_value']}, plain accuracy {finding['accuracy']} vs majority "
                     f"share {finding['majority_share']} ({finding['cv']} folds)</p>")
        if finding.get("kind") == "numeric":
            parts.append(strip_plot(finding["by_class"], finding["value"], finding["feature"], finding.get("bounds")))
        elif finding.get("kind") == "categorical":
            parts.append(stacked_bars(finding["by_class"], finding["value"]))
        parts.append("</div>")
    rows = "".join(f"<tr><td>{_esc(r['feature'])}</td><td>{_esc(r['field'])}={_esc(r['value'])}</td>"
                   f"<td>{r['score']}</td><td>{r['p_value']}</td><td>{'yes' if r['flagged'] else ''}</td></tr>"
                   for r in check.get("results", [])[:15])
    if rows:
        parts.append("<h3>Strongest features</h3><table><tr><th>feature</th><th>label</th><th>balanced accuracy"
                     f"</th><th>p</th><th>flagged</th></tr>{rows}</table>")
    return parts


def _duplicates_html(check: dict[str, Any], project: Project | None) -> list[str]:
    summary = check["summary"]
    parts = [f"<p>{summary.get('clusters', 0)} clusters of near-duplicates ({summary.get('clips_in_clusters', 0)} "
             f"clips) among {summary.get('compared', 0)} clips compared.</p>"]
    if summary.get("note"):
        parts.append(f"<p class='muted'>{_esc(summary['note'])}</p>")
    for leak in check.get("leakage", []):
        parts.append(f"<p class='flag'>{_esc(leak['message'])}</p>")
    for item in check.get("clusters_across_groups", []):
        parts.append(f"<p>Cluster {item['clips']} spans groups {_esc(', '.join(item['groups']))}: the split must "
                     "keep these groups together.</p>")
    shown = check.get("clusters", [])[:30]
    thumbs = _thumbnails(project, [c for cluster in shown for c in cluster])
    for cluster in shown:
        figures = []
        for clip_id in cluster:
            path, uri = thumbs.get(clip_id, (str(clip_id), None))
            image = f"<img src='{uri}' alt='clip {clip_id}'>" if uri else ""
            figures.append(f"<figure>{image}<figcaption>#{clip_id} {_esc(path)}</figcaption></figure>")
        parts.append(f"<div class='cluster'>{''.join(figures)}</div>")
    return parts


def _balance_html(check: dict[str, Any]) -> list[str]:
    parts = [f"<p class='muted'>A class needs {check['summary']['min_count']} gold-labelled clips for "
             f"{check['summary']['min_test']} of them in a {check['summary']['test_size']:.0%} held-out set.</p>"]
    for name, info in check.get("fields", {}).items():
        short = {f["value"] for f in check["flagged"] if f["field"] == name and f["kind"] in ("rare", "absent")}
        parts.append(f"<h3>{_esc(name)}</h3>")
        parts.append(bar_chart(info["counts"], line_at=check["summary"]["min_count"], highlight=short, label=name))
    parts += [f"<p class='flag'>{_esc(f['message'])}</p>" for f in check["flagged"]]
    return parts


def _local_shortcuts_html(check: dict[str, Any], project: Project | None) -> list[str]:
    """Each finding's words and, where the project is at hand, a heat map of the region over a sample frame."""
    if not check["flagged"]:
        return ["<p class='ok'>No region of the picture predicts a label within its camera or group.</p>"]
    from curation.audit.local_figure import local_shortcut_figure

    parts = []
    for finding in check["flagged"]:
        parts.append(f"<p class='flag'>{_esc(finding['message'])}</p>")
        if project is not None:
            figure = local_shortcut_figure(project, finding)
            parts.append(f"<figure><img src='{figure['data_uri']}' alt='where: {_esc(finding.get('where', ''))}'>"
                         f"<figcaption class='muted'>{_esc(figure['caption'])}</figcaption></figure>")
    return parts


def _untested_html(untested: list[dict[str, Any]] | None) -> list[str]:
    """Every part no check could test, with why and the clips concerned (by id and file): nothing hidden."""
    if untested is None:
        return []
    if not untested:
        return ["<p class='ok'>Every check could test every part.</p>"]
    parts = ["<h2 id='untested'>Not tested</h2><p class='muted'>These parts could not be tested; a check that flags "
             "nothing here has not cleared them.</p><ul>"]
    for part in untested:
        parts.append(f"<li><b>{_esc(part['check'])}</b>: {_esc(part['what'])} — {_esc(part['why'])}")
        clips = part.get("clips") or []
        if clips:
            rows = "".join(f"<tr><td>{_esc(c['clip'])}</td><td>{_esc(c.get('file'))}</td>"
                           f"<td>{_esc(c.get('error', ''))}</td></tr>" for c in clips)
            parts.append(f"<table><tr><th>clip</th><th>file</th><th>error</th></tr>{rows}</table>")
        parts.append("</li>")
    parts.append("</ul>")
    return parts


def render_html(report: dict[str, Any], project: Project | None = None) -> str:
    """The report as one HTML page with inline SVG plots and embedded thumbnails."""
    checks = report["checks"]
    labels = report["labels"]
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Audit of {_esc(report['project'])}"
             f"</title><style>{STYLE}</style></head><body>",
             f"<h1>Dataset audit: {_esc(report['project'])}</h1>",
             f"<p class='muted'>Rubric {_esc(report['rubric']['name'])} {_esc(report['rubric']['version'])} · "
             f"{_esc(report['created_at'])} · labels: {labels['gold']} {_esc(labels['used'])}; "
             f"{labels['needs_review']} clips need review, {labels['unlabelled']} unlabelled.</p>",
             "<table><tr><th>check</th><th>flagged</th><th>not tested</th></tr>"]
    untested = report.get("untested")  # None: a report made before reports listed them
    for name, check in checks.items():
        count = len(check["flagged"]) if name != "duplicates" else len(check.get("clusters", []))
        css = "flag" if count else "ok"
        gaps = sum(1 for part in untested or [] if part["check"] == name)
        gap_cell = f"<a href='#untested'>{gaps} parts</a>" if gaps else "-"
        parts.append(f"<tr><td><a href='#{name}'>{name}</a></td><td class='{css}'>{count}</td>"
                     f"<td>{gap_cell}</td></tr>")
    parts.append("</table>")
    parts += _untested_html(untested)
    sections = {"shortcuts": ("Shortcuts: nuisance features that predict a label", lambda c: _shortcuts_html(c)),
                "local_shortcuts": ("Local shortcuts: a mark in one part of the picture that predicts a label",
                                    lambda c: _local_shortcuts_html(c, project)),
                "duplicates": ("Near-duplicates and leakage", lambda c: _duplicates_html(c, project)),
                "conformance": ("Conformance to the rubric", lambda c: (
                    [f"<p class='flag'>{_esc(f['message'])}</p>" for f in c["flagged"]]
                    or ["<p class='ok'>Every answer fits the rubric and round-trips.</p>"])),
                "balance": ("Balance: rare classes", _balance_html)}
    for name, check in checks.items():
        title, render = sections[name]
        parts.append(f"<h2 id='{name}'>{title}</h2>")
        parts += render(check)
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html(report: dict[str, Any], path: str | os.PathLike, project: Project | None = None) -> Path:
    """Write :func:`render_html` to ``path`` (via a temporary file, so a failure leaves no half page)."""
    path = Path(path)
    if path.is_dir():
        raise CliptuneError(f"{path} is a folder; give a file name such as {path / 'audit.html'}")
    if not path.parent.exists():
        raise CliptuneError(f"{path.parent}: no such folder; create it first or choose another --html path")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    tmp.write_text(render_html(report, project), encoding="utf-8")
    os.replace(tmp, path)
    return path
