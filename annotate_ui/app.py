"""The cliptune browser app: ``cliptune ui PROJECT`` (or ``streamlit run annotate_ui/app.py -- PROJECT``).

Pages by role: everyone labels; reviewers and leads review; leads also see the dashboard and export. Each role
lands on its own main page. A page that is not in someone's navigation does not exist for them: opening its
address shows "Page not found" and their main page instead.

The page scripts live in ``views/``, not ``pages/``: Streamlit treats a ``pages/`` folder beside the entry script
as the old multipage layout and runs those files directly, bypassing ``st.navigation`` and with it the roles.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from annotate_ui import auth

PAGES = Path(__file__).resolve().parent / "views"

# An emoji favicon is drawn locally (a data: URL); a ":material/…:" icon, on a page or here, makes Streamlit 1.67
# fetch the favicon from fonts.gstatic.com, and the app must not call out. Hence no page icons.
st.set_page_config(page_title="cliptune", page_icon="🎬", layout="wide")

me = auth.current_login()
if me is None:
    navigation = st.navigation(
        [st.Page(PAGES / "login.py", title="Log in", url_path="login", default=True)], position="hidden"
    )
    if st.session_state.pop("logged_out", False):
        st.html(auth.cookie_html(None), unsafe_allow_javascript=True)
else:
    # Each role lands on its own work: annotators label, reviewers review, leads watch the dashboard.
    home = {"annotator": "label", "reviewer": "review", "lead": "dashboard"}[me.role]
    pages = [st.Page(PAGES / "label.py", title="Label", url_path="label", default=home == "label")]
    if me.role in ("reviewer", "lead"):
        pages.append(st.Page(PAGES / "review.py", title="Review", url_path="review", default=home == "review"))
    if me.role == "lead":
        pages.append(st.Page(PAGES / "dashboard.py", title="Dashboard", url_path="dashboard", default=True))
        pages.append(st.Page(PAGES / "export.py", title="Export", url_path="export"))
    navigation = st.navigation(pages)
    with st.sidebar:
        st.markdown(f"**{me.user}** · {me.role}")
        st.caption(f"project {auth.open_project().name}")
        if st.button("Log out", key="logout"):
            auth.logout()
            st.rerun()
        st.html(auth.cookie_html(me), unsafe_allow_javascript=True)
navigation.run()
