"""cliptune's core library: the stages a clip goes through, each a package that imports only the stages below it.

errors, rubric (the ground) -> records -> media -> review -> team -> dataset, audit -> cli, demo.
See docs/architecture.md. No Streamlit and no torch at any level (checked by import-linter).
"""

__version__ = "0.1.0"
