"""Errors a user can act on. The CLI prints them as one line, without a traceback."""


class CliptuneError(Exception):
    """Base class: a mistake in the user's input or environment, with a message that says what to do."""


class RubricError(CliptuneError):
    """A rubric file, or a value checked against a rubric, is invalid. ``problems`` lists one per field."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems if problems is not None else [message]


class StoreError(CliptuneError):
    """The project store cannot be opened or written as asked."""


class VideoError(CliptuneError):
    """A file cannot be decoded or encoded as video."""
