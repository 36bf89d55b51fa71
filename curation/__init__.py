"""cliptune's core library: project store, rubrics, video, ingest, agreement, audit, splits, export.

Imports no Streamlit and no torch at import time.
"""

__version__ = "0.1.0"
