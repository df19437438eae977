"""One error type for everything a user can get wrong.

The CLI prints ``KsdiffError`` as a single line ``ksdiff: <file>: <problem>`` and exits with code 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from os import PathLike


class KsdiffError(Exception):
    """A problem with the user's input (file, option, checkpoint), reported in one line."""

    exit_code = 2

    def __init__(self, problem: str, path: str | PathLike | None = None):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)
