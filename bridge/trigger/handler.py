"""Lambda entry point ``bridge.trigger.handler.lambda_handler``.

An SQS message (the EventBridge event) → parse and check it → route by model package group →
record the package's new state in the ledger, which says which approvals still need a run
(:mod:`bridge.trigger.decision`) → for each, an idempotent start of exactly one Azure DevOps run.
Structured JSON logs carry the model package ARN, the route, the run id and its web URL; never
the credential. Any failure raises, so the message returns to the queue and is delivered again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
from bridge.trigger.decision import Approval, Observation, epoch_ms
from bridge.trigger.events import InvalidEvent, ModelPackageStateChange, parse_event
from bridge.trigger.ledger import DynamoDBLedger, Ledger, MemoryLedger
from bridge.trigger.routing import Route, RoutingTable, parse_routes
from bridge.trigger.settings import TriggerSettings
from bridge.trigger.starter import RetryBudget, RunRequest, start_run_once

logger = Logger(service="smbridge-trigger")

IDEMPOTENCY_KEY_PREFIX = "smbridge-approval"
IDEMPOTENCY_KEY = "[modelPackageArn, anchor]"
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
    registry_accounts: frozenset[str] = frozenset()
    budget: RetryBudget = field(default_factory=RetryBudget)
    sleep: Callable[[float], None] = time.sleep
    http: Any = None
    clients: dict[str, AzureDevOpsClient] = field(default_factory=dict)
    idempotency: IdempotencyConfig | None = None
    _guarded_start: Callable[..., dict[str, Any]] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.persistence is not None:  # built once per container, as powertools intends
            self.idempotency = IdempotencyConfig(
                event_key_jmespath=IDEMPOTENCY_KEY,
                expires_after_seconds=self.idempotency_ttl_seconds,
            )
            self._guarded_start = idempotent_function(
                _start_run,
                data_keyword_argument="approval_key",
                persistence_store=self.persistence,
                config=self.idempotency,
                key_prefix=IDEMPOTENCY_KEY_PREFIX,
            )

    def start_once(self, **kwargs: Any) -> dict[str, Any]:
        """:func:`_start_run`, through the idempotency records when there is a store."""
        if self._guarded_start is None:
            return _start_run(**kwargs)
        assert self.idempotency is not None
        context = kwargs["context"]
        if hasattr(context, "get_remaining_time_in_millis"):
            # the in-progress record expires with this invocation's remaining time
            self.idempotency.register_lambda_context(context)
        return self._guarded_start(**kwargs)

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
        registry_accounts=settings.registry_account_ids,
        budget=RetryBudget(max_attempts=settings.max_attempts),
    )


def template_parameters(
    change: ModelPackageStateChange, route: Route, source_event_id: str | None = None
) -> dict[str, str]:
    """Exactly the parameters model-deploy.yml declares (all strings), plus the route's extras.
    ``source_event_id``: the approval's anchor event (default: this event)."""
    detail = change.detail
    return {
        **route.template_parameters,
        "modelPackageArn": detail.model_package_arn,
        "modelPackageGroupName": detail.model_package_group_name,
        "modelPackageVersion": str(detail.model_package_version),
        "sourceEventId": source_event_id or change.id,
    }


def run_request(change: ModelPackageStateChange, route: Route) -> ApiRequest:
    """The exact ``Runs - Run Pipeline`` request the trigger sends for ``change``."""
    return run_pipeline_request(
        route.project,
        route.pipeline_id,
        template_parameters=template_parameters(change, route),
        ref_name=route.ref_name,
    )


def observation_of(change: ModelPackageStateChange) -> Observation:
    return Observation(epoch_ms(change.changed_at), change.detail.model_approval_status, change.id)


def _remaining(context: Any) -> Callable[[], float]:
    if context is not None and hasattr(context, "get_remaining_time_in_millis"):
        return lambda: context.get_remaining_time_in_millis() / 1000.0
    return lambda: 900.0


def _log_retry(reason: str, delay: float) -> None:
    logger.warning(
        "retrying Azure DevOps", extra={"reason": reason, "delay_seconds": round(delay, 2)}
    )


def _start_run(
    *,
    approval_key: dict[str, Any],
    request: RunRequest,
    runtime: TriggerRuntime,
    context: Any,
    how: list[str],
) -> dict[str, Any]:
    """Start the run of one approval (``approval_key``: ARN and anchor, the idempotency key);
    appends to ``how`` whether it was started or found. Not called at all when the idempotency
    record already holds the result."""
    arn, anchor_ms = approval_key["modelPackageArn"], approval_key["anchor"]
    before = runtime.ledger.mark_posted(arn, anchor_ms)
    if before.run_id is not None:  # another invocation finished it meanwhile
        how.append("found-existing")
        return {"runId": before.run_id, "webUrl": before.web_url}
    outcome = start_run_once(
        runtime.client_for(request.route),
        request,
        previous_attempt=before.posted,
        remaining_seconds=_remaining(context),
        sleep=runtime.sleep,
        budget=runtime.budget,
        on_retry=_log_retry,
    )
    runtime.ledger.record_run(arn, anchor_ms, outcome.run_id, outcome.web_url)
    how.append("started" if outcome.created else "found-existing")
    return {"runId": outcome.run_id, "webUrl": outcome.web_url}


def start_approval(
    change: ModelPackageStateChange,
    approval: Approval,
    route: Route,
    runtime: TriggerRuntime,
    context: Any,
) -> tuple[dict[str, Any], str]:
    """Exactly one run for ``approval``: (its run, how: started | found-existing | duplicate)."""
    arn = change.detail.model_package_arn
    request = RunRequest(
        route=route,
        template_parameters=template_parameters(change, route, approval.event_id),
        approved_at=datetime.fromtimestamp(approval.anchor_ms / 1000, UTC),
    )
    how: list[str] = []
    result = runtime.start_once(
        approval_key={"modelPackageArn": arn, "anchor": approval.anchor_ms},
        request=request,
        runtime=runtime,
        context=context,
        how=how,
    )
    if not how:  # answered from the idempotency record: make sure the ledger knows the run
        runtime.ledger.record_run(arn, approval.anchor_ms, result["runId"], result["webUrl"])
        return result, "duplicate"
    return result, how[0]


def handle(event: Any, context: Any, runtime: TriggerRuntime) -> dict[str, Any]:
    """Process one EventBridge event. Raises on anything that must not be dropped (an invalid
    event, an Azure DevOps refusal, exhausted retries), so the queue delivers it again and
    finally dead-letters it."""
    logger.remove_keys(list(_EVENT_KEYS))  # a warm container must not carry the last event's keys
    try:
        change = parse_event(event, registry_accounts=runtime.registry_accounts)
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
    decision = runtime.ledger.observe(detail.model_package_arn, observation_of(change))
    if not decision.pending:
        status = "duplicate" if change.approved else "ignored"
        logger.info(f"{status}: {decision.reason}")
        result: dict[str, Any] = {"status": status, "reason": decision.reason}
        if decision.approval is not None:
            result.update(runId=decision.approval.run_id, webUrl=decision.approval.web_url)
        return {**result, "route": route.describe()}
    runs = []
    try:
        for approval in decision.pending:
            result, how = start_approval(change, approval, route, runtime, context)
            runs.append({**result, "status": how, "approvalEventId": approval.event_id})
            logger.info(
                f"{how}: run {result['runId']} ({decision.reason})",
                extra={
                    "run_id": result["runId"],
                    "run_url": result["webUrl"],
                    "outcome": how,
                    "approval_event_id": approval.event_id,
                },
            )
    except AzureDevOpsError as exc:
        logger.error(
            "failed: Azure DevOps refused or kept failing",
            extra={"status": exc.status, "error": str(exc), "rate_limit": exc.rate_limit},
        )
        if exc.status == 401:
            raise CredentialsError(f"route {route.describe()}: {exc}") from None
        raise ServiceError(f"route {route.describe()}: {exc}") from None
    first = runs[0]
    return {
        "status": first["status"],
        "runId": first["runId"],
        "webUrl": first["webUrl"],
        "reason": decision.reason,
        "route": route.describe(),
        "runs": runs,
    }


def sqs_messages(event: Any) -> list[tuple[str, Any]] | None:
    """The (message id, EventBridge event) pairs of an SQS event source batch, or ``None``
    when ``event`` is an EventBridge event itself (a direct invocation)."""
    if not (isinstance(event, dict) and isinstance(event.get("Records"), list)):
        return None
    messages = []
    for record in event["Records"]:
        if not isinstance(record, dict) or record.get("eventSource") != "aws:sqs":
            raise InvalidEvent("Records: not an SQS event source batch")
        body = record.get("body")
        if not isinstance(body, str):
            raise InvalidEvent("Records[].body: missing, expected the event as JSON text")
        messages.append((str(record.get("messageId", "")), body))
    return messages


def process(event: Any, context: Any, runtime: TriggerRuntime) -> dict[str, Any]:
    """An SQS event source batch (the deployed path: one message per batch, infra/trigger.yaml)
    or a bare EventBridge event (a direct invocation). Raises on the first message that fails,
    so the batch returns to the queue until its ``maxReceiveCount``, then to the DLQ."""
    messages = sqs_messages(event)
    if messages is None:
        return handle(event, context, runtime)
    results = []
    for message_id, body in messages:
        logger.append_keys(message_id=message_id)
        results.append(handle(body, context, runtime))
    return {"results": results}


_RUNTIME: TriggerRuntime | None = None


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _RUNTIME
    if _RUNTIME is None:
        _RUNTIME = build_runtime(TriggerSettings.from_environ())
    return process(event, context, _RUNTIME)
