"""The one exception a spec parser raises: every problem, each naming its field."""

from __future__ import annotations

from collections.abc import Sequence

from trustwire.model.limits import MAX_REPORTED


class SpecError(ValueError):
    """One or more problems in a spec; each names its field."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems = list(problems)
        # The message lands in a status condition: name at most MAX_REPORTED problems.
        shown = "; ".join(f"{path}: {msg}" for path, msg in self.problems[:MAX_REPORTED])
        hidden = len(self.problems) - MAX_REPORTED
        super().__init__(shown + (f"; and {hidden} more problem(s)" if hidden > 0 else ""))

    @property
    def fields(self) -> list[str]:
        return [path for path, _ in self.problems]
