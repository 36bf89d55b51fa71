"""Dashboard (leads): progress per annotator, throughput, agreement per field with confidence intervals, label
distribution, and the labelling budget forecast.

The figures come from one running :class:`~curation.team.tally.Tally` per project and server process: a rerun reads
only the answers added since the last one, so the page stays quick on a project of 100,000 clips.
"""

from __future__ import annotations

import threading

import altair as alt
import pandas as pd
import streamlit as st

from annotate_ui import auth
from curation.errors import CliptuneError
from curation.team.progress import forecast
from curation.team.tally import Tally

auth.require_role("lead")
project = auth.open_project()




@st.cache_resource(max_entries=4)
def project_tally(path: str) -> tuple[Tally, threading.Lock]:
    # One per project and server process, shared by every lead's session; the lock keeps two reruns from
    # updating it at once.
    return Tally(auth.open_project()), threading.Lock()


tally, tally_lock = project_tally(str(project.path.resolve()))
with tally_lock:
    tally.refresh()
    pace, people = tally.throughput(), tally.progress()
    current, gold = tally.label_distribution(), tally.label_distribution(gold=True)
    measured = tally.measured_pace()
    try:
        report = tally.agreement()  # the bootstrap reruns only after a change
        agreement_error = None
    except CliptuneError as exc:
        report, agreement_error = None, exc

st.title("Dashboard")
labelled = sum(p.submitted for p in people)
cells = st.columns(4)
cells[0].metric("Answers", labelled, help="Current submitted answers, all annotators")
cells[1].metric("Clips per hour", pace["clips_per_hour"] or "–", help="Labelling acts per hour of measured time")
cells[2].metric("Median s / clip", pace["median_s"] or "–")
cells[3].metric("Hours spent", pace["hours"])

st.subheader("Progress per annotator")
if people:
    st.dataframe(
        pd.DataFrame([{"annotator": p.user, "role": p.role, "done": p.done / p.assigned if p.assigned else 0.0,
                       "assigned": p.assigned, "submitted": p.submitted, "skipped": p.skipped, "unclear": p.unclear,
                       "left": p.remaining, "median s": p.pace.median_s, "clips/hour": p.pace.clips_per_hour}
                      for p in people]),
        hide_index=True,
        column_config={"done": st.column_config.ProgressColumn("done", format="percent", min_value=0, max_value=1)},
    )
else:
    st.info("Nobody has assignments yet: `cliptune assign PROJECT --annotators a,b,c`.")

st.subheader("Agreement per field")
if agreement_error is not None:
    st.warning(f"Agreement could not be computed: {agreement_error}")
if report is None:
    pass  # the warning above says why
elif not report.get("fields"):
    st.info("No clip has answers from two annotators yet.")
else:
    rows = []
    for name, stats in report["fields"].items():
        low, high = (list(stats.get("ci") or []) + [None, None])[:2]
        rows.append({"field": name, "metric": stats.get("metric"), "level": stats.get("level"),
                     "value": stats.get("value"), "ci low": low, "ci high": high,
                     "clips": stats.get("n_items"), "annotators": stats.get("n_annotators")})
    table = pd.DataFrame(rows)
    st.dataframe(table, hide_index=True, column_config={
        column: st.column_config.NumberColumn(format="%.3f") for column in ("value", "ci low", "ci high")})
    shown = table.dropna(subset=["value"])
    if not shown.empty:
        base = alt.Chart(shown).encode(y=alt.Y("field:N", sort=None, title=None))
        chart = base.mark_rule().encode(x=alt.X("ci low:Q", title="agreement (95 % CI)"), x2="ci high:Q") + \
            base.mark_point(filled=True, size=80).encode(x="value:Q", tooltip=list(table.columns))
        st.altair_chart(chart.properties(height=alt.Step(24)), width="stretch")

st.subheader("Label distribution")
for name, counts in current.items():
    tidy = pd.DataFrame([{"value": value, "count": count, "of": "answers"} for value, count in counts.items()]
                        + [{"value": value, "count": gold[name].get(value, 0), "of": "gold"} for value in counts])
    chart = alt.Chart(tidy, title=name).mark_bar().encode(
        y=alt.Y("value:N", sort=list(counts), title=None), yOffset="of:N", x=alt.X("count:Q", title="clips"),
        color=alt.Color("of:N", title=None), tooltip=["value", "of", "count"],
    ).properties(height=alt.Step(16))  # one band per bar: the chart grows with the number of choices
    st.altair_chart(chart, width="stretch")
if not current:
    st.caption("This rubric has no choice fields to count.")

st.subheader("Budget forecast")
target = st.number_input("Target: labelled clips", min_value=1, value=1000, step=100, key="budget_target")
try:
    budget = forecast(project, int(target), pace=measured)
except CliptuneError as exc:
    st.error(str(exc))
else:
    cols = st.columns(3)
    cols[0].metric("Person-hours in all", budget["hours_total"])
    cols[1].metric("Still to go", budget["hours_remaining"], help="Hours left after the gold answers already made")
    cols[2].metric("Pace", f"{budget['clips_per_hour']}/h" if budget["clips_per_hour"] else "–",
                   help=f"{budget['seconds_per_clip']} s per clip ({budget['pace_source']})")
    parts = [f"{name.replace('_', ' ')} {hours:g} h" for name, hours in budget["parts"].items() if hours is not None]
    st.markdown("Of which: " + " · ".join(parts))
    st.caption(f"Computed by {budget['source']}, from this project's measured pace "
               "(the field's rule of thumb of 20 clips per hour until something is measured).")
    with st.expander("Details"):
        st.json(budget["detail"])
