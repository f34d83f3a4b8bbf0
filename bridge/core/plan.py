"""Dry runs: the calls a command would make (AWS API calls and Azure DevOps REST requests alike),
with their key arguments, and no call at all.

Every dry run builds one :class:`Plan` and prints it with :func:`render_plan`: in text, a header
``dry run: <title> (no call made)`` then one line per step (arguments as compact JSON; an Azure
DevOps request's body indented below it); with ``--output json``, one document
``{"dry_run": true, "title": …, "steps": [{"service", "operation", "arguments", "when"}]}``.
Secrets never go into a plan.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridge.core.output import Reporter

AZURE_DEVOPS = "azure-devops"


@dataclass(frozen=True)
class PlannedStep:
    """One call a command would make. ``service``: ``sagemaker``, ``cloudformation``, ``sts``,
    ``azure-devops``, …; ``operation``: ``StartPipelineExecution`` or, for Azure DevOps,
    ``POST https://dev.azure.com/…``; ``arguments``: its key arguments (the request body for
    Azure DevOps); ``when``: the condition under which it is made ("" = always)."""

    service: str
    operation: str
    arguments: Any = field(default_factory=dict)
    when: str = ""

    def describe(self) -> str:
        """The step's line (without an Azure DevOps body, printed below it)."""
        condition = f"  [{self.when}]" if self.when else ""
        if self.service == AZURE_DEVOPS:
            return f"{self.operation}{condition}"
        return f"{self.service}:{self.operation} {_compact(self.arguments)}{condition}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "operation": self.operation,
            "arguments": self.arguments,
            "when": self.when,
        }


PlannedCall = PlannedStep  # the former name (an AWS call is one kind of step)


@dataclass(frozen=True)
class Plan:
    """What a dry run would do: a title and the steps, in order."""

    title: str
    steps: list[PlannedStep] = field(default_factory=list)

    def header(self) -> str:
        return f"dry run: {self.title} (no call made)"

    def lines(self) -> list[str]:
        lines = [self.header()]
        for step in self.steps:
            lines.append(f"  {step.describe()}")
            if step.service == AZURE_DEVOPS and step.arguments is not None:
                lines.extend(f"      {line}" for line in json.dumps(step.arguments).splitlines())
        return lines

    def calls(self) -> list[dict[str, Any]]:
        return [step.as_dict() for step in self.steps]

    def as_dict(self) -> dict[str, Any]:
        return {"dry_run": True, "title": self.title, "steps": self.calls()}


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def render_plan(reporter: Reporter, plan: Plan) -> int:
    """Print ``plan`` (the one dry-run format) and make it the command's JSON result; exit 0."""
    for line in plan.lines():
        reporter.info(line)
    reporter.result(plan.as_dict())
    return 0
