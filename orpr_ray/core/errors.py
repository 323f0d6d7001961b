"""Errors that name what is wrong with the user's input, so a planner can fix the file."""
from __future__ import annotations


class InputError(ValueError):
    """Bad input: names the file, the field (column or key), the row or unit, and the problem."""

    def __init__(self, problem: str, *, file: str | None = None, field: str | None = None,
                 where: str | None = None):
        self.problem = problem
        self.file = file
        self.field = field
        self.where = where
        parts = [p for p in (
            f"file {file}" if file else None,
            f"field '{field}'" if field else None,
            where,
        ) if p]
        super().__init__(f"{', '.join(parts)}: {problem}" if parts else problem)


class ConfigError(InputError):
    """A configuration value or file is invalid."""
