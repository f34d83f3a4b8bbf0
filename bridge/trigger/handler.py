"""Lambda entry point ``bridge.trigger.handler.lambda_handler``.

parse the event → route by model package group → (not approved: remember, ignore) → idempotent
start of exactly one Azure DevOps run per (model package ARN, approval). Structured JSON logs
carry the model package ARN, the route, the run id and its web URL; never the credential.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer

from bridge.azure_devops.client import (
    ApiRequest,
    AzureDevOpsClient,
    AzureDevOpsError,
    run_pipeline_request,
)
from bridge.azure_devops.credentials import SecretCredential, secrets_manager_loader
from bridge.errors import CredentialsError, ServiceError
from bridge.trigger.events import InvalidEvent, ModelPackageStateChange, parse_event
from bridge.trigger.ledger import DynamoDBLedger, Ledger, MemoryLedger
from bridge.trigger.routing import Route, RoutingTable, parse_routes
from bridge.trigger.settings import TriggerSettings
from bridge.trigger.starter import RetryBudget, RunOutcome, RunRequest, start_run_once

logger = Logger(service="smbridge-trigger")

IDEMPOTENCY_KEY_PREFIX = "smbridge-approval"
_EVENT_KEYS = (
    "model_package_arn",
    "model_package_group",
    "approval_status",
    "event_id",
    "route",
)


@dataclass
class TriggerRuntime:
    """Everything built once per container: routes, credential, clients, idempotency store."""

    routes: RoutingTable
    credential: SecretCredential
    ledger: Ledger
    persistence: BasePersistenceLayer | None
    idempotency_ttl_seconds: int = 7 * 24 * 3600
    budget: RetryBudget = field(default_factory=RetryBudget)
    sleep: Callable[[float], None] = time.sleep
    http: Any = None
    clients: dict[str, AzureDevOpsClient] = field(default_factory=dict)

    def client_for(self, route: Route) -> AzureDevOpsClient:
        if route.organization not in self.clients:
            self.clients[route.organization] = AzureDevOpsClient(
                route.organization, self.credential, http=self.http
            )
        return self.clients[route.organization]


def build_runtime(settings: TriggerSettings, *, session: Any = None) -> TriggerRuntime:
    session = session or boto3.Session()
    if settings.routes:
        routes = parse_routes(settings.routes, source="SMBRIDGE_ROUTES")
    else:
        ssm = session.client("ssm")
        value = ssm.get_parameter(Name=settings.routes_parameter)["Parameter"]["Value"]
        routes = parse_routes(value, source=f"SSM parameter {settings.routes_parameter}")
    if settings.ado_secret_arn:
        load = secrets_manager_loader(session.client("secretsmanager"), settings.ado_secret_arn)
        source = f"secret {settings.ado_secret_arn}"
    else:
        pat = settings.ado_pat or ""
        load, source = (lambda: pat), "SMBRIDGE_ADO_PAT"
    credential = SecretCredential(load, source=source)
    if settings.idempotency_table:
        dynamodb = session.client("dynamodb")
        ledger: Ledger = DynamoDBLedger(dynamodb, settings.idempotency_table)
        persistence: BasePersistenceLayer | None = DynamoDBPersistenceLayer(
            table_name=settings.idempotency_table, boto3_client=dynamodb
        )
    else:
        ledger, persistence = MemoryLedger(), None
    return TriggerRuntime(
        routes=routes,
        credential=credential,
        ledger=ledger,
        persistence=persistence,
        idempotency_ttl_seconds=settings.idempotency_ttl_seconds,
        budget=RetryBudget(max_attempts=settings.max_attempts),
    )


def template_parameters(change: ModelPackageStateChange, route: Route) -> dict[str, str]:
    """Exactly the parameters model-deploy.yml declares (all strings), plus the route's extras."""
    detail = change.detail
    return {
        **route.template_parameters,
        "modelPackageArn": detail.model_package_arn,
        "modelPackageGroupName": detail.model_package_group_name,
        "modelPackageVersion": str(detail.model_package_version),
        "sourceEventId": change.id,
    }


def run_request(change: ModelPackageStateChange, route: Route) -> ApiRequest:
    """The exact ``Runs - Run Pipeline`` request the trigger sends for ``change``."""
    return run_pipeline_request(
        route.project,
        route.pipeline_id,
        template_parameters=template_parameters(change, route),
        ref_name=route.ref_name,
    )


def handle(event: Any, context: Any, runtime: TriggerRuntime) -> dict[str, Any]:
    """Process one event. Raises (so EventBridge retries, then dead-letters) on anything that
    must not be dropped: an invalid event, an Azure DevOps refusal, exhausted retries."""
    logger.remove_keys(list(_EVENT_KEYS))  # a warm container must not carry the last event's keys
    try:
        change = parse_event(event)
    except InvalidEvent as exc:
        logger.error("rejected: invalid event", extra={"reason": str(exc)})
        raise
    detail = change.detail
    logger.append_keys(
        model_package_arn=detail.model_package_arn,
        model_package_group=detail.model_package_group_name,
        approval_status=detail.model_approval_status,
        event_id=change.id,
    )
    route = runtime.routes.route_for(detail.model_package_group_name)
    if route is None:
        logger.info(f"ignored: no route for group {detail.model_package_group_name}")
        return {"status": "ignored", "reason": "no route"}
    logger.append_keys(route=route.describe())
    modified_at = detail.last_modified_time.timestamp()
    if not change.approved:
        runtime.ledger.record_not_approved(detail.model_package_arn, modified_at)
        logger.info(f"ignored: status is {detail.model_approval_status}, not Approved")
        return {"status": "ignored", "reason": f"status {detail.model_approval_status}"}
    epoch = runtime.ledger.epoch(detail.model_package_arn)
    if epoch and modified_at <= epoch:
        logger.warning("ignored: stale approval (the package left Approved after this event)")
        return {"status": "ignored", "reason": "stale approval"}
    request = RunRequest(
        route=route,
        model_package_arn=detail.model_package_arn,
        template_parameters=template_parameters(change, route),
        approved_at=detail.last_modified_time,
        epoch=epoch,
    )
    approval = {"modelPackageArn": detail.model_package_arn, "approval": "Approved", "epoch": epoch}
    executed: list[RunOutcome] = []

    def remaining() -> float:
        if context is not None and hasattr(context, "get_remaining_time_in_millis"):
            return context.get_remaining_time_in_millis() / 1000.0
        return 900.0

    def log_retry(reason: str, delay: float) -> None:
        logger.warning(
            "retrying Azure DevOps", extra={"reason": reason, "delay_seconds": round(delay, 2)}
        )

    def start(approval: dict[str, Any]) -> dict[str, Any]:
        previous = runtime.ledger.mark_post_attempt(approval["modelPackageArn"], approval["epoch"])
        outcome = start_run_once(
            runtime.client_for(route),
            request,
            previous_attempt=previous,
            remaining_seconds=remaining,
            sleep=runtime.sleep,
            budget=runtime.budget,
            on_retry=log_retry,
        )
        executed.append(outcome)
        return {"runId": outcome.run_id, "webUrl": outcome.web_url, "created": outcome.created}

    try:
        if runtime.persistence is None:
            result = start(approval=approval)
        else:
            config = IdempotencyConfig(
                event_key_jmespath="[modelPackageArn, approval, epoch]",
                expires_after_seconds=runtime.idempotency_ttl_seconds,
                lambda_context=context
                if hasattr(context, "get_remaining_time_in_millis")
                else None,
            )
            guarded = idempotent_function(
                start,
                data_keyword_argument="approval",
                persistence_store=runtime.persistence,
                config=config,
                key_prefix=IDEMPOTENCY_KEY_PREFIX,
            )
            result = guarded(approval=approval)
    except AzureDevOpsError as exc:
        logger.error(
            "failed: Azure DevOps refused or kept failing",
            extra={"status": exc.status, "error": str(exc), "rate_limit": exc.rate_limit},
        )
        if exc.status == 401:
            raise CredentialsError(f"route {route.describe()}: {exc}") from None
        raise ServiceError(f"route {route.describe()}: {exc}") from None
    status = "duplicate"  # the idempotency record answered: this approval already has its run
    if executed:
        status = "started" if executed[0].created else "found-existing"
    logger.info(
        f"{status}: run {result['runId']}",
        extra={"run_id": result["runId"], "run_url": result["webUrl"], "outcome": status},
    )
    return {"status": status, **result, "route": route.describe()}


_RUNTIME: TriggerRuntime | None = None


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _RUNTIME
    if _RUNTIME is None:
        _RUNTIME = build_runtime(TriggerSettings.from_environ())
    return handle(event, context, _RUNTIME)
