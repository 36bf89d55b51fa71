"""Label: the next assigned clip plays at once; fill the rubric's fields; Submit (Ctrl+Enter), Skip or Unclear.

Blind: everything shown comes from :func:`curation.team.progress.labelling_view` (its own answers included), which reads
only the logged-in annotator's own answers. Time on a clip runs from the first time it is shown in this browser
session to the button press. A revision stores a new version; the earlier ones stay.
"""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from annotate_ui import auth, rubric_form
from annotate_ui.player import player
from curation.errors import CliptuneError
from curation.records.annotations import add_annotation
from curation.team.progress import answer_history, labelling_view

me = auth.require_role()
project = auth.open_project()
rubric = project.rubric
state = st.session_state
state.setdefault("shown_at", {})


def save(clip_id: int, prefix: str, timer_key: str, status: str) -> None:
    """Button callback: validate, store one annotation row with its time, and move on (or say what is wrong)."""
    values = rubric_form.read_fields(rubric, prefix)
    comment = (state.get(prefix + "_comment") or "").strip() or None
    if auth.current_login() is None:
        # Expired while the page stood open: nothing is written in their name, but what they typed is kept (in
        # this browser session, outside any widget) and filled in again once they log back in.
        state["kept_answer"] = {"user": me.user, "clip_id": clip_id, "fields": values, "comment": comment or ""}
        return
    if status == "submitted":
        problems = rubric.validate_fields(values)
        if problems:
            state["label_problems"] = problems
            return
    if status == "unclear" and comment is None:
        state["label_problems"] = ["Comment: Unclear needs a comment that says what is unclear"]
        return
    seconds = round(time.monotonic() - state["shown_at"].get(timer_key, time.monotonic()), 2)
    try:
        add_annotation(project, clip_id, me.user, fields=values if status == "submitted" else None,
                       seconds_spent=seconds, status=status, comment=comment, source="ui")
    except CliptuneError as exc:
        state["label_problems"] = [str(exc)]
        return
    state["shown_at"].pop(timer_key, None)
    state["revise_clip"] = None
    state["label_saved"] = f"Clip {clip_id}: {status} ({seconds:.0f} s)"


revise = state.get("revise_clip")
try:
    view = labelling_view(project, me.user, revise)
except CliptuneError as exc:  # e.g. the clip was unassigned meanwhile
    state["revise_clip"] = None
    st.error(str(exc))
    st.stop()
progress = view.progress

if saved := state.pop("label_saved", None):
    st.toast(saved, icon="✅")

head = st.columns([4, 1, 1, 1], vertical_alignment="bottom")
share = progress.done / progress.assigned if progress.assigned else 0.0
head[0].progress(share, text=f"**{progress.done} / {progress.assigned}** assigned clips done")
head[1].metric("My median", f"{progress.pace.median_s:.0f} s" if progress.pace.median_s else "–",
               help="Median seconds per clip over your answers so far")
head[2].metric("My pace", f"{progress.pace.clips_per_hour:.0f}/h" if progress.pace.clips_per_hour else "–",
               help="Clips per hour over the time you spent on them (the field's rule of thumb: 20/h)")
head[3].metric("Left", progress.remaining)

clip = view.clip
if clip is None:
    if progress.assigned:
        st.success(f"All {progress.assigned} clips assigned to you are done. Thank you! "
                   "You can revise an answer below.")
    else:
        st.info("No clips are assigned to you yet. A lead assigns them with `cliptune assign`.")
else:
    previous = view.previous if revise else None
    prefix = f"c{clip.id}v{previous.id if previous else 0}_"
    timer_key = prefix
    state["shown_at"].setdefault(timer_key, time.monotonic())

    kept = state.get("kept_answer")
    if kept is not None and previous is None and kept["user"] == me.user and kept["clip_id"] == clip.id:
        state.pop("kept_answer")
        st.warning(f"Your session expired before your answer to clip {clip.id} was stored. What you typed is "
                   "filled in again: press Submit to store it.")
    else:
        kept = None
    if previous is not None:
        banner = st.columns([5, 1], vertical_alignment="center")
        banner[0].info(f"Revising your answer to clip {clip.id} ({previous.status}, "
                       f"{previous.created_at:%Y-%m-%d %H:%M}). Submit stores a new version; the earlier one is kept.")
        banner[1].button("Back to next clip", on_click=lambda: state.update(revise_clip=None))

    left, right = st.columns([3, 2], gap="large")
    with left:
        st.markdown(f"#### Clip {clip.id} · `{clip.path}`")
        player(clip, prefetch=view.upcoming)
        with st.expander("Instructions", expanded=True):
            st.markdown(rubric.instructions or "_This rubric has no instructions._")
    with right:
        earlier = previous.fields if previous else (kept["fields"] if kept else None)
        values = rubric_form.rubric_fields(rubric, prefix, earlier)
        rubric_form.preview(rubric, values)
        comment_before = (previous.comment or "") if previous else (kept["comment"] if kept else "")
        st.text_input("Comment", key=prefix + "_comment", value=comment_before,
                      placeholder="needed for Unclear: what is unclear?")
        buttons = st.columns(3)
        buttons[0].button("Submit", type="primary", key=prefix + "_submit",
                          on_click=save, args=(clip.id, prefix, timer_key, "submitted"), width="stretch")
        buttons[1].button("Skip", key=prefix + "_skip", on_click=save,
                          args=(clip.id, prefix, timer_key, "skipped"), width="stretch")
        buttons[2].button("Unclear", key=prefix + "_unclear", on_click=save,
                          args=(clip.id, prefix, timer_key, "unclear"), width="stretch")
        for problem in state.pop("label_problems", []):
            name, _, message = problem.partition(":")
            st.error(f"**{name}**:{message}" if message else problem)

mine = view.own_answers
with st.expander(f"My answers ({len(mine)}) — revise one", expanded=clip is None and bool(mine)):
    if not mine:
        st.caption("Your answers will be listed here.")
    else:
        table = pd.DataFrame([{"clip": a.clip_id, "status": a.status, "output": a.output_text or a.comment or "",
                               "seconds": a.seconds_spent, "saved": a.created_at} for a in mine])
        st.dataframe(table, hide_index=True, height=min(400, 38 + 35 * len(mine)))
        pick = st.selectbox("Clip to revise", [a.clip_id for a in mine], key="revise_pick",
                            format_func=lambda c: f"clip {c}")
        versions = answer_history(project, me.user, pick)
        st.caption(f"{len(versions)} version(s) stored for clip {pick}.")
        st.button("Revise", key="revise_go", on_click=lambda: state.update(revise_clip=pick))
