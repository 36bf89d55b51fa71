"""Export (leads): what would be exported now, and the command that exports it."""

from __future__ import annotations

import shlex

import streamlit as st

from annotate_ui import auth
from curation.review.resolve import resolution_summary

auth.require_role("lead")
project = auth.open_project()

st.title("Export")
summary = resolution_summary(project)
cells = st.columns(3)
cells[0].metric("Gold answers", summary["gold"], help="Only gold answers are exported")
cells[1].metric("Need review", summary["needs_review"])
cells[2].metric("Unlabelled", summary["unlabelled"])
st.markdown("Draw (and freeze) the held-out split, then export the trainers' formats, from a terminal:")
path = shlex.quote(str(project.path))
st.code(f"cliptune split {path} --test-size 0.15 --freeze\ncliptune export {path} OUT_FOLDER", language="bash")
st.caption("Clips that still need review are left out and counted in the data card.")
