"""The Label Studio bridge: a labelling config from the rubric (:mod:`~annotate_ui.label_studio.config`), pushing
clips as tasks and pulling annotations back (:mod:`~annotate_ui.label_studio.bridge`), and Label Studio task JSON
turned into cliptune answers (:mod:`~annotate_ui.label_studio.tasks`).

May import: ``curation``; never the Streamlit pages.
"""
