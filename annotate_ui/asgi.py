"""What ``cliptune ui`` runs: ``streamlit run annotate_ui/asgi.py -- PROJECT``.

The Streamlit app (app.py) plus the route that streams clip proxies from disk (media.py).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from annotate_ui.media import clip_routes

app = st.App(Path(__file__).resolve().parent / "app.py", routes=clip_routes())
