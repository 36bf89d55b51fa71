"""The store and what people write into it: the project database (SQLAlchemy; SQLite by default), people and
their logins, answers and reviews (append-only: an edit is a new row), bulk imports of answers, the project's
status counts, and the database file's health (integrity check, backups).

May import: ``curation.errors`` and ``curation.rubric`` only.
"""
