"""The trigger's settings, from the Lambda's environment (validated once per container)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bridge.errors import ConfigError, CredentialsError


class TriggerSettings(BaseModel):
    """``SMBRIDGE_*`` variables of the trigger Lambda (see infra/trigger.yaml)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    routes: str | None = Field(None, description="SMBRIDGE_ROUTES: routing JSON")
    routes_parameter: str | None = Field(None, description="SMBRIDGE_ROUTES_PARAMETER: SSM name")
    ado_secret_arn: str | None = Field(None, description="SMBRIDGE_ADO_SECRET_ARN")
    ado_pat: str | None = Field(None, description="SMBRIDGE_ADO_PAT: local runs only", repr=False)
    idempotency_table: str | None = Field(None, description="SMBRIDGE_IDEMPOTENCY_TABLE")
    idempotency_ttl_seconds: int = Field(7 * 24 * 3600, ge=3600)
    max_attempts: int = Field(5, ge=1, le=10)
    registry_accounts: str | None = Field(
        None,
        description="SMBRIDGE_REGISTRY_ACCOUNTS: comma-separated 12-digit ids; when set, only "
        "model packages of these accounts start runs",
        pattern=r"^[0-9]{12}(,[0-9]{12})*$",
    )

    @property
    def registry_account_ids(self) -> frozenset[str]:
        return (
            frozenset(self.registry_accounts.split(",")) if self.registry_accounts else frozenset()
        )

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str] | None = None, *, require_credential: bool = True
    ) -> TriggerSettings:
        """``require_credential=False``: a dry run, which sends nothing."""
        env = os.environ if environ is None else environ
        values = {
            name[len("SMBRIDGE_") :].lower(): value
            for name, value in env.items()
            if name.startswith("SMBRIDGE_") and value != ""
        }
        try:
            settings = cls.model_validate(values)
        except ValidationError as exc:
            error = exc.errors()[0]
            name = "SMBRIDGE_" + str(error["loc"][0]).upper()
            raise ConfigError(f"{name}: {error['msg']}") from None
        if not settings.routes and not settings.routes_parameter:
            raise ConfigError(
                "no routes: set SMBRIDGE_ROUTES (JSON) or SMBRIDGE_ROUTES_PARAMETER (SSM name), "
                "or pass --routes FILE"
            )
        if require_credential and not settings.ado_secret_arn and not settings.ado_pat:
            raise CredentialsError(
                "no Azure DevOps credential: set SMBRIDGE_ADO_SECRET_ARN (Secrets Manager), or "
                "SMBRIDGE_ADO_PAT for local runs"
            )
        return settings
