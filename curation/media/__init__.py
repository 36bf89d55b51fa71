"""Video files in: probing and frame sampling (decord), browser proxies, ingest into the store, the nuisance features
the audit and the split read (brightness, motion, signatures), and the synthetic sample generator.

May import: ``curation.records`` and the ground (``curation.errors``, ``curation.rubric``).
"""
