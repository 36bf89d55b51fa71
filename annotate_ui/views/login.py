"""Log in with name and password."""

from __future__ import annotations

import streamlit as st

from annotate_ui import auth

project = auth.open_project()
st.title("cliptune")
st.caption(f"Project **{project.name}** — rubric {project.rubric.name}. Runs on this machine only.")
if st.session_state.pop("expired", False):
    st.info("Your session expired after a long idle time. Please log in again.")

with st.form("login_form", enter_to_submit=True, border=True, width=420):
    name = st.text_input("Name", autocomplete="username")
    password = st.text_input("Password", type="password", autocomplete="current-password")
    submitted = st.form_submit_button("Log in", type="primary")

if submitted:
    if not name.strip() or not password:
        st.error("Enter your name and your password.")
    elif auth.login(name, password) is None:
        st.error("Name or password is wrong.")
    else:
        st.rerun()
