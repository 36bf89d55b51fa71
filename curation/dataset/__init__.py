"""From gold answers to files a trainer reads: the held-out ledger (frozen clips never move), the stratified group
split, over-sampling of rare classes in train, the export formats and the data card.

May import: ``curation.team`` and every stage below it; not ``curation.audit`` (its sibling: the command line hands
the audit's near-duplicate groups to the split as plain values).
"""
