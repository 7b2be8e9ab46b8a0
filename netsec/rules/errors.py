"""The one error a rule can raise: what is wrong and where (file:line)."""
from __future__ import annotations


class RuleError(ValueError):
    """A rule that cannot be loaded; `where` is "file:line", `reason` names the keyword."""

    def __init__(self, reason: str, where: str = "<string>:1") -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason
