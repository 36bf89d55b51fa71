"""Dashboard (leads): progress per annotator, throughput, agreement per field with confidence intervals, label
distribution, and the labelling budget forecast."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from annotate_ui import auth
from curation.errors import CliptuneError
from curation.team.progress import agreement, annotator_progress, data_version, forecast, label_distribution, throughput

auth.require_role("lead")
project = auth.open_project()


@st.cache_data(show_spinner="Bootstrapping agreement intervals…", max_entries=8)
def cached_agreement(path: str, version: tuple[int, int, int]) -> dict:
    # The bootstrap takes about a second; recompute only when answers or reviews change (version).
    return agreement(auth.open_project())


st.title("Dashboard")
pace = throughput(project)
people = annotator_progress(project)
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
try:
    report = cached_agreement(str(project.path.resolve()), data_version(project))
except CliptuneError as exc:
    report = None
    st.warning(f"Agreement could not be computed: {exc}")
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
current, gold = label_distribution(project), label_distribution(project, gold=True)
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
    budget = forecast(project, int(target))
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
