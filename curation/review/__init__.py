"""Agreement and gold answers: agreement coefficients (Krippendorff's alpha, kappas), per-field agreement reports,
text similarity, and the resolution of each clip's answers into a gold answer or a place in the review queue.

May import: ``curation.media``, ``curation.records`` and the ground (``curation.errors``, ``curation.rubric``).
"""
