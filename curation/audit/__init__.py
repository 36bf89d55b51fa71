"""The dataset audit: one module per check, all returning :class:`~curation.audit.result.AuditResult`.

- :func:`~curation.audit.shortcuts.check_shortcuts` — nuisance features (brightness, camera, hour…) that alone
  predict a label;
- :func:`~curation.audit.duplicates.check_duplicates` — near-duplicate clusters and split leakage
  (:func:`~curation.audit.duplicates.near_duplicate_groups` feeds the split);
- :func:`~curation.audit.conformance.check_conformance` — answers that do not fit the rubric;
- :func:`~curation.audit.balance.check_balance` — classes too rare for a useful held-out set.

:func:`~curation.audit.report.audit_report` runs them all (``cliptune audit PROJECT --json --html FILE``).
"""

from curation.audit.balance import check_balance
from curation.audit.conformance import check_conformance
from curation.audit.duplicates import check_duplicates, near_duplicate_groups
from curation.audit.result import AuditInputs, AuditResult
from curation.audit.shortcuts import check_shortcuts

__all__ = [
    "AuditInputs",
    "AuditResult",
    "check_balance",
    "check_conformance",
    "check_duplicates",
    "check_shortcuts",
    "near_duplicate_groups",
]
