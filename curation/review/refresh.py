"""Bring a project's stored derived state up to date in one call: after a bulk import, so that the next `agree`,
`resolve`, `split`, `export` or page reads it instead of computing it. The agreement report with the default
bootstrap (what `agree` and the export's data card show) is kept too."""

from __future__ import annotations

import time
from typing import Any

from curation.records.store import Project
from curation.review.agreement_store import refresh_agreement
from curation.review.field_agreement import agreement_report
from curation.review.resolve import refresh_resolution


def refresh_derived_state(project: Project) -> dict[str, Any]:
    """Gold answers (unanimous policy) and agreement rows, for the clips whose answers changed; what was done."""
    started = time.perf_counter()
    resolved = refresh_resolution(project, "unanimous")
    agreement = refresh_agreement(project)
    agreement_report(project)  # kept under its watermark: read back while no answer changes
    return {"clips_resolved": resolved, "clips_agreement": agreement,
            "seconds": round(time.perf_counter() - started, 2)}
