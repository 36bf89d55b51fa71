"""Review: the disagreement queue; every annotator's answer side by side, differing fields highlighted; pick one
or edit, say why, and the result is the clip's gold answer (an adjudication, which outranks everything else).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from annotate_ui import auth, rubric_form
from annotate_ui.player import player
from curation.errors import CliptuneError
from curation.records.annotations import add_review
from curation.review.resolve import resolution_summary, review_queue
from curation.team.progress import review_sheet

me = auth.require_role("reviewer", "lead")
project = auth.open_project()
rubric = project.rubric
state = st.session_state
EDIT = -1
# The queue is ordered (rare events first, then the most disputed); the page lists its head, read from the stored
# resolution, so a click costs the same with 50 or 50,000 clips in the queue.
QUEUE_SHOWN = 200

st.title("Review")
policy = st.segmented_control("Gold policy", ["unanimous", "majority"], default="unanimous", key="review_policy",
                              required=True, help="unanimous: every disagreement is reviewed; majority: only clips "
                              "without a per-field majority")
summary = resolution_summary(project, policy or "unanimous")
st.caption(f"{summary['gold']} clips have a gold answer, {summary['needs_review']} need review, "
           f"{summary['unlabelled']} are unlabelled.")
if saved := state.pop("review_saved", None):
    st.toast(saved, icon="✅")

queue = review_queue(project, policy or "unanimous", limit=QUEUE_SHOWN)
if not queue:
    st.success("Nothing to review: every labelled clip has a gold answer.")
    st.stop()

shown = f"the first {len(queue)} of {summary['needs_review']}" if summary["needs_review"] > len(queue) else \
    str(len(queue))
with st.expander(f"Queue ({shown}): rare events first, then the most disputed", expanded=False):
    st.dataframe(pd.DataFrame([{"clip": q.clip_id, "reason": q.reason, "rare": q.rare,
                                "disagreement": q.disagreement, "fields": ", ".join(q.fields),
                                "annotators": ", ".join(q.annotators)} for q in queue]), hide_index=True)
by_clip = {q.clip_id: q for q in queue}
kept = state.get("kept_review")
if kept is not None and (kept["user"] != me.user or kept["clip"] not in by_clip):
    kept = None
clip_id = st.selectbox("Clip to review", list(by_clip), key="review_clip",
                       index=list(by_clip).index(kept["clip"]) if kept else 0,
                       format_func=lambda c: f"clip {c} — {by_clip[c].reason}"
                       + (" · rare" if by_clip[c].rare else "") + f" · {', '.join(by_clip[c].fields) or '-'}")
sheet = review_sheet(project, clip_id)


def save_review(clip: int, choice: int, prefix: str) -> None:
    reason = (state.get(prefix + "reason") or "").strip()
    if auth.current_login() is None:
        # Expired while the page stood open: nothing is written in their name, but the choice, edits and reason
        # are kept (outside any widget) and filled in again once they log back in.
        state["kept_review"] = {"user": me.user, "clip": clip, "choice": choice, "reason": reason,
                                "fields": rubric_form.read_fields(rubric, prefix + "f_") if choice == EDIT else None}
        return
    if not reason:
        state["review_problem"] = "Reason: say why this is the gold answer"
        return
    try:
        if choice == EDIT:
            add_review(project, clip, me.user, reason=reason, fields=rubric_form.read_fields(rubric, prefix + "f_"))
        else:
            add_review(project, clip, me.user, reason=reason, annotation_id=choice)
    except CliptuneError as exc:
        state["review_problem"] = str(exc)
        return
    state["review_saved"] = f"Clip {clip}: gold answer saved"


left, right = st.columns([2, 3], gap="large")
with left:
    st.markdown(f"#### Clip {clip_id} · `{sheet.clip.path}`")
    order = list(by_clip)
    following = order[order.index(clip_id) + 1] if order.index(clip_id) + 1 < len(order) else None
    player(sheet.clip, prefetch=following)
with right:
    if sheet.differing:
        st.markdown("Answers differ on " + ", ".join(f":orange-background[**{name}**]" for name in sheet.differing))
    columns = st.columns(max(1, len(sheet.answers)))
    for column, answer in zip(columns, sheet.answers, strict=False):
        with column.container(border=True):
            st.markdown(f"**{answer.user}** · {answer.status}")
            if answer.status == "submitted" and answer.fields:
                for f in rubric.fields:
                    line = f"{f.name}: **{answer.fields.get(f.name)}**"
                    st.markdown(f":orange-background[{line}]" if f.name in sheet.differing else line)
            if answer.comment:
                st.caption(f"comment: {answer.comment}")
            if answer.seconds_spent is not None:
                st.caption(f"{answer.seconds_spent:.0f} s")

    prefix = f"rv{clip_id}_"
    submitted = [a for a in sheet.answers if a.status == "submitted" and a.fields]
    options = [a.id for a in submitted] + [EDIT]
    labels = {a.id: f"{a.user}: {a.output_text}" for a in submitted} | {EDIT: "Edit an answer"}
    if kept is not None and (kept["clip"] != clip_id or kept["choice"] not in options):
        kept = None
    if kept is not None:
        state.pop("kept_review")
        st.warning("Your session expired before this gold answer was saved. Your choice and reason are filled in "
                   "again: press Save gold answer to store them.")
    choice = st.radio("Gold answer", options, key=prefix + "choice", format_func=lambda o: labels[o],
                      index=options.index(kept["choice"]) if kept else (None if len(options) > 1 else 0))
    if choice == EDIT:
        start = (kept or {}).get("fields") or (submitted[0].fields if submitted else None)
        values = rubric_form.rubric_fields(rubric, prefix + "f_", start)
        rubric_form.preview(rubric, values)
    st.text_input("Reason", key=prefix + "reason", placeholder="why this answer is right (required)",
                  value=kept["reason"] if kept else "")
    st.button("Save gold answer", type="primary", disabled=choice is None,
              on_click=save_review, args=(clip_id, choice if choice is not None else EDIT, prefix))
    if problem := state.pop("review_problem", None):
        st.error(problem)
