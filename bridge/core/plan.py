"""Dry runs: the AWS calls a command would make, with their key arguments, and no call at all."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridge.core.output import Reporter


@dataclass(frozen=True)
class PlannedCall:
    service: str
    operation: str
    arguments: dict[str, Any] = field(default_factory=dict)
    when: str = ""

    def describe(self) -> str:
        args = ", ".join(f"{k}={_short(v)}" for k, v in self.arguments.items())
        condition = f"  [{self.when}]" if self.when else ""
        return f"{self.service}:{self.operation}({args}){condition}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "operation": self.operation,
            "arguments": self.arguments,
            "when": self.when,
        }


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def show_plan(
    reporter: Reporter, calls: list[PlannedCall], title: str | None = None
) -> list[dict[str, Any]]:
    """Print the planned calls (in a group under ``title``, or as ``dry run: …`` lines) and
    return them as dictionaries for the command's result."""
    if title is None:
        for call in calls:
            reporter.info(f"dry run: {call.describe()}")
    else:
        with reporter.group(title):
            for call in calls:
                reporter.info(call.describe())
    return [call.as_dict() for call in calls]
