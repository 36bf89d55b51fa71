"""The Label Studio bridge: a labelling config from the rubric (:mod:`~annotate_ui.label_studio.config`), pushing
clips as tasks and pulling annotations back (:mod:`~annotate_ui.label_studio.bridge`), and Label Studio task JSON
turned into cliptune answers (:mod:`~annotate_ui.label_studio.tasks`), the Label Studio users remembered under
cliptune names (:mod:`~annotate_ui.label_studio.identities`), answers written in short batches
(:mod:`~annotate_ui.label_studio.writes`) and predictions pushed in bulk (:mod:`~annotate_ui.label_studio.predictions`).

May import: ``curation``; never the Streamlit pages.
"""
