"""Who labels what, and how it goes: assignment of clips to annotators, progress and the pages' views of it
(label queue, review sheet, dashboard figures), and the budget forecast.

May import: ``curation.review``, ``curation.media``, ``curation.records`` and the ground.
"""
