"""``azure_devops.environments`` in bridge.yaml: the environments ``smbridge ado setup`` manages
and their production Approval check (pydantic models; :mod:`bridge.ado.setup` builds its
parameters from them). Loads no HTTP code: :mod:`bridge.settings.bridge_config` imports it.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic_core import PydanticCustomError

DEFAULT_TIMEOUT_MINUTES = 3 * 24 * 60  # 4320: three days
MAX_TIMEOUT_MINUTES = 30 * 24 * 60  # 43200: thirty days, the check's maximum

# Letters, digits, '.', '_' and '-' (the suffix '-production' is added to it).
EnvironmentPrefix = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$")
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class Approver(_Model):
    """An Azure DevOps identity (user or group) by id; ``display_name`` is informational."""

    id: uuid.UUID
    display_name: str | None = None


class ProductionApproval(_Model):
    """The Approval check on the production environment."""

    approvers: list[Approver] = Field(min_length=1, max_length=50)
    minimum_approvers: int = Field(1, ge=1)
    timeout_minutes: int = Field(DEFAULT_TIMEOUT_MINUTES, ge=1, le=MAX_TIMEOUT_MINUTES)
    instructions: str = Field("", max_length=4000)
    requester_cannot_approve: bool = True
    execution_order: Literal["anyOrder", "inSequence"] = "anyOrder"

    @model_validator(mode="after")
    def _consistent(self) -> ProductionApproval:
        # phrased to follow "expected" in bridge/settings/bridge_config.py's one-line errors
        ids = [a.id for a in self.approvers]
        twice = sorted({str(i) for i in ids if ids.count(i) > 1})
        if twice:
            raise PydanticCustomError(
                "duplicate_approver", "each approver id once, got {id} twice", {"id": twice[0]}
            )
        if self.minimum_approvers > len(self.approvers):
            raise PydanticCustomError(
                "too_few_approvers",
                "minimum_approvers at most the number of approvers ({count}), got {minimum}",
                {"count": len(self.approvers), "minimum": self.minimum_approvers},
            )
        return self


class EnvironmentsSettings(_Model):
    """``azure_devops.environments`` in bridge.yaml: ``<prefix>-staging`` and
    ``<prefix>-production``, the latter guarded by ``production_approval``; both get an
    Exclusive Lock check, and the model-deploy pipeline ``pipeline_id`` is authorised on both.

    ``trigger_identity``: the Azure DevOps identity the approval trigger queues model-deploy runs
    as (the owner of its PAT, or its service principal). Only read to warn when
    ``requester_cannot_approve`` would leave that identity's runs without enough approvers."""

    prefix: EnvironmentPrefix
    production_approval: ProductionApproval
    pipeline_id: int | None = Field(
        None, ge=1, description="the model-deploy pipeline's id (definitionId in its URL)"
    )
    trigger_identity: uuid.UUID | None = None
