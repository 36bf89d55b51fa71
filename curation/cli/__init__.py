"""The ``cliptune`` command: a thin shell that parses, calls a library function and prints. :mod:`~curation.cli.main`
builds the command and loads the verbs of ``annotate_ui`` and ``training`` through the ``cliptune.commands``
entry-point group, so this package never imports them.

May import: every stage of ``curation`` (it is the top floor), never ``annotate_ui`` or ``training``.
"""
