"""The dataset audit: one module per check, each returning :class:`~curation.audit.result.AuditResult` (per-clip
scores, flagged or not, a summary and details, like cleanlab's issue managers) -- shortcuts, near-duplicates and
leakage, conformance, balance -- and :mod:`curation.audit.report`, which runs them all and writes the HTML report.

May import: ``curation.team`` and every stage below it; not ``curation.dataset`` (its sibling).
"""
