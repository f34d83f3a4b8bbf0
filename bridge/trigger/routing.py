"""Routes: which Azure DevOps pipeline a model package group's approvals start.

JSON (in ``SMBRIDGE_ROUTES`` or the SSM parameter named by ``SMBRIDGE_ROUTES_PARAMETER``)::

    {"routes": {"churn-xgb": {"organization": "contoso", "project": "mlops", "pipelineId": 12,
                              "branch": "main", "templateParameters": {"environmentSet": "eu"}}},
     "default": {"organization": "contoso", "project": "mlops", "pipelineId": 13}}
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bridge.errors import ConfigError, first_error

RESERVED_PARAMETERS = frozenset(
    {"modelPackageArn", "modelPackageGroupName", "modelPackageVersion", "sourceEventId"}
)


class Route(BaseModel):
    """One Azure DevOps target."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    organization: str = Field(min_length=1)
    project: str = Field(min_length=1)
    pipeline_id: int = Field(alias="pipelineId", ge=1)
    branch: str = Field("main", min_length=1)
    template_parameters: dict[str, str] = Field(default_factory=dict, alias="templateParameters")

    @field_validator("template_parameters")
    @classmethod
    def _no_reserved(cls, value: dict[str, str]) -> dict[str, str]:
        clash = RESERVED_PARAMETERS & set(value)
        if clash:
            raise ValueError(
                f"{', '.join(sorted(clash))}: set by the trigger itself, remove from the route"
            )
        return value

    @property
    def ref_name(self) -> str:
        return self.branch if self.branch.startswith("refs/") else f"refs/heads/{self.branch}"

    def describe(self) -> str:
        return f"{self.organization}/{self.project}/pipeline {self.pipeline_id}"


class RoutingTable(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    routes: dict[str, Route] = Field(default_factory=dict)
    default: Route | None = None

    def route_for(self, group: str) -> Route | None:
        return self.routes.get(group, self.default)


def parse_routes(text: str, *, source: str) -> RoutingTable:
    try:
        document: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}: routes are not valid JSON ({exc.msg})") from None
    try:
        return RoutingTable.model_validate(document)
    except ValidationError as exc:
        where, message = first_error(exc)
        raise ConfigError(f"{source}: {where}: {message}") from None
