"""Problems found in an operator's input, with where they are and what to do."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Severity(Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    severity: Severity
    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.severity.value}: {self.message}"


def error(file: str, line: int | None, message: str) -> Problem:
    return Problem(Severity.ERROR, file, line, message)


def warning(file: str, line: int | None, message: str) -> Problem:
    return Problem(Severity.WARNING, file, line, message)


def has_errors(problems: list[Problem]) -> bool:
    return any(p.severity is Severity.ERROR for p in problems)
