"""Issue 11, item 1: the approval trigger under faults — exactly one run per approval, none lost.

Scenario (``SMBRIDGE_RELIABILITY_SCALE``, default 1: the issue's size; 0.2 is a fifth of it):
1,000 model package state changes of 200 model package versions (PendingManualApproval at
registration, then approvals, edits while approved, rejections and re-approvals), 30 % of them
delivered twice (half with the same event id, as an at-least-once redelivery; half with a new
id, as SageMaker sending one change twice), all shuffled, put on the trigger queue as they
arrive, and delivered concurrently by as many pollers as the event source mapping's
MaximumConcurrency in infra/trigger.yaml (2), each a Lambda execution environment of its own
(routes, credential cache, clients) running the real handler (``bridge.trigger.handler.process``)
against moto's DynamoDB table, SQS queues and Secrets Manager secret, all created from the
template's rendered properties (visibility timeout, redrive policy with the template's own
maxReceiveCount, batch size, function timeout and environment).

Faults:
- Azure DevOps (the stand-in, every request checked against the OpenAPI specs), drawn per
  ``POST …/runs`` and per ``Builds - List`` (bridge/sandbox/faults.py): 20 % 429 with
  ``Retry-After`` (1-30 s), 10 % 503, 5 % connection resets (a POST has created its run: the
  ambiguous case), 2 % time-outs (half of the POSTs have created their run);
- the PAT rotated in Secrets Manager half-way through: the old one is refused with the 203
  sign-in page (a proxy dropping ``X-TFS-FedAuthRedirect``), the trigger must read the secret
  again once per execution environment and go on;
- 5 % of the invocations aborted at a random external call (DynamoDB, Secrets Manager, Azure
  DevOps), before or after it took effect: half by a transport error from the call, half by the
  runtime dying (a new execution environment takes the slot). The message is delivered again
  as SQS would after its visibility timeout, by which time the dead invocation's Lambda timeout
  has passed: its idempotency record's in-progress lock has expired (powertools sets it to the
  invocation's remaining time), which the harness applies to that invocation's records alone;
- one outage longer than the function's whole retry budget: the organization of one route
  (``fabrikam``, the route of one model package) answers every request 503 from its first
  request until that invocation's message has been received the template's maxReceiveCount
  times (300; 299 x 360 s = 29.9 h of retries in production) and moved to the dead-letter
  queue. One organization rather than all of Azure DevOps: organizations fail independently
  (scale units), and every message a global outage caught would cost 300 invocations here.
  Then ``smbridge trigger replay`` (bridge/trigger/local.py) re-drives the dead-letter queue,
  with the same fault rates.

Asserted: exactly one run per approval, the approvals derived from each package's true
timeline (an approval is a stretch of Approved between other statuses, bridge/trigger/
decision.py; the oracle here is written independently and checked against decision.observe);
none lost (before the replay every approval without a run has a message of its package in the
DLQ, with the reason its last attempt failed; after it, none is left without one); every 429
waited exactly its Retry-After or failed the invocation; the rotated secret read once per
environment. Counted and printed: runs, POSTs, 429s honoured, duplicates prevented by
``Builds - List`` lookups, dead-lettered messages replayed.

Sources: SageMaker developer guide, "Events that SageMaker sends to EventBridge" (one event
type for every change, possibly more than once); EventBridge user guide (at-least-once, no
order); Lambda developer guide, "Using Lambda with Amazon SQS" (a failed batch returns after the
visibility timeout; ScalingConfig.MaximumConcurrency); SQS developer guide, "dead-letter
queues" (moved once ReceiveCount exceeds maxReceiveCount); Microsoft's "Rate limits" page
(429 with Retry-After). Seeded: ``SMBRIDGE_RELIABILITY_SEED`` (printed in every failure).
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import botocore.loaders
import botocore.session
import pytest
import requests
import responses
from moto import mock_aws

import bridge.trigger.local as local
import bridge.trigger.starter as starter
from bridge.azure_devops.credentials import basic_credentials
from bridge.sandbox.ado_contract import REFERENCE_DIR
from bridge.sandbox.cfn import Renderer, load_template
from bridge.sandbox.event_source import EventSourceMapping
from bridge.sandbox.faults import (
    RUNS,
    Abort,
    AbortPlan,
    FaultPlan,
    Invocation,
    RuntimeKilled,
    StepSession,
    install_boto3_steps,
    invocation,
    keyed_random,
)
from bridge.trigger.decision import APPROVED, Observation, PackageState, epoch_ms, observe
from bridge.trigger.handler import build_runtime, process
from bridge.trigger.local import LocalContext, replay
from bridge.trigger.settings import TriggerSettings
from tests.support.fake_ado import FakeAzureDevOps

SCALE = float(os.environ.get("SMBRIDGE_RELIABILITY_SCALE") or "1")
SEED = int(os.environ.get("SMBRIDGE_RELIABILITY_SEED") or "1101")
EVENTS, PACKAGES = round(1000 * SCALE), round(200 * SCALE)
DUPLICATED = 0.30
QUEUE_DEPTH = 10  # messages put on the queue ahead of the pollers (events arrive over time)
HANG_GUARD_SECONDS = 600  # a stuck harness fails instead of hanging CI (not a timing assertion)

REPO_ROOT = REFERENCE_DIR.parent
TEMPLATE = load_template(REPO_ROOT / "infra" / "trigger.yaml")
ACCOUNT, REGION = "111122223333", "eu-west-1"  # the example events' account and region
EXAMPLE = json.loads((REFERENCE_DIR / "sagemaker-events/model-package-approved.json").read_text())
CAPTURED = json.loads(
    (REFERENCE_DIR / "sagemaker-events/model-package-approved-captured-shape.json").read_text()
)
GROUPS = ("churn-xgb", "fraud-gbm", "ltv-reg")
# One model package of its own group, routed to another organization: the one the outage hits.
OUTAGE_GROUP, OUTAGE_ORGANIZATION = "pricing-xgb", "fabrikam"
ROUTES = {
    "routes": {
        "churn-xgb": {"organization": "contoso", "project": "mlops", "pipelineId": 12},
        "fraud-gbm": {"organization": "contoso", "project": "mlops", "pipelineId": 13},
        OUTAGE_GROUP: {"organization": OUTAGE_ORGANIZATION, "project": "mlops", "pipelineId": 12},
    },
    "default": {"organization": "contoso", "project": "mlops", "pipelineId": 12, "branch": "main"},
}
PAT, ROTATED_PAT = "reliability-pat-one-sentinel", "reliability-pat-two-sentinel"
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)  # the registrations; runs are queued "now", later


def where() -> str:
    return (
        f"(seed {SEED}, scale {SCALE}: reproduce with SMBRIDGE_RELIABILITY_SEED={SEED} "
        f"SMBRIDGE_RELIABILITY_SCALE={SCALE})"
    )


# -- the scenario: each package's true timeline, and what is delivered ----------------------


@dataclass(frozen=True)
class Change:
    """One state change of a model package, as SageMaker reports it."""

    arn: str
    group: str
    version: int
    status: str
    at: datetime
    event_id: str
    captured_shape: bool  # no LastModifiedTime, epoch-ms CreationTime: the envelope's time counts

    def event(self, event_id: str) -> dict[str, Any]:
        iso = self.at.isoformat().replace("+00:00", "Z")
        if self.captured_shape:
            event = copy.deepcopy(CAPTURED)
            event["time"] = iso
        else:
            event = copy.deepcopy(EXAMPLE)
            event["time"] = (self.at + timedelta(seconds=1)).isoformat().replace("+00:00", "Z")
            event["detail"]["LastModifiedTime"] = iso
        event["id"] = event_id
        event["resources"] = [self.arn]
        event["detail"].update(
            ModelPackageGroupName=self.group,
            ModelPackageVersion=self.version,
            ModelPackageArn=self.arn,
            ModelApprovalStatus=self.status,
        )
        if self.status != APPROVED:
            event["detail"]["ApprovalDescription"] = f"{self.status} by the reviewer"
        return event


def _event_id(rng: Any) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def timelines(seed: int, packages: int, events: int) -> list[list[Change]]:
    """``packages`` timelines with ``events`` changes in all: the outage's package (registered,
    then approved), and the others with 2 to 7 changes each, 5 on average."""
    rng = keyed_random(seed, "timelines")
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{OUTAGE_GROUP}/1"
    outage = [
        Change(arn, OUTAGE_GROUP, 1, status, T0 + timedelta(minutes=n), _event_id(rng), False)
        for n, status in enumerate(["PendingManualApproval", APPROVED])
    ]
    return [*_timelines(rng, packages - 1, events - len(outage)), outage]


def _timelines(rng: Any, packages: int, events: int) -> list[list[Change]]:
    counts = [events // packages + (1 if n < events % packages else 0) for n in range(packages)]
    for n in range(0, packages - 1, 2):
        moved = min(rng.randint(0, 2), counts[n + 1] - 2)
        counts[n] += moved
        counts[n + 1] -= moved
    result = []
    for n, count in enumerate(counts):
        group, version = GROUPS[n % len(GROUPS)], n // len(GROUPS) + 1
        arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{group}/{version}"
        statuses = ["PendingManualApproval", APPROVED]
        while len(statuses) < count:
            previous, r = statuses[-1], rng.random()
            if previous == APPROVED:  # rejected, back to pending, or edited while approved
                statuses.append(
                    "Rejected" if r < 0.45 else "PendingManualApproval" if r < 0.6 else APPROVED
                )
            elif r < 0.85:  # re-approved
                statuses.append(APPROVED)
            else:
                statuses.append("Rejected" if previous != "Rejected" else "PendingManualApproval")
        captured = rng.random() < 0.1
        at = T0 + timedelta(seconds=37 * n)
        changes = []
        for status in statuses[:count]:
            at += timedelta(seconds=rng.randint(20, 900))
            changes.append(Change(arn, group, version, status, at, _event_id(rng), captured))
        result.append(changes)
    return result


@dataclass(frozen=True)
class Delivery:
    index: int
    change: Change
    event_id: str

    def body(self) -> str:
        return json.dumps(self.change.event(self.event_id))


def deliveries(seed: int, packages: list[list[Change]]) -> list[Delivery]:
    rng = keyed_random(seed, "deliveries")
    changes = [c for timeline in packages for c in timeline]
    out = [(c, c.event_id) for c in changes]
    for c in rng.sample(changes, round(DUPLICATED * len(changes))):
        out.append((c, c.event_id if rng.random() < 0.5 else _event_id(rng)))
    rng.shuffle(out)
    return [Delivery(n, c, event_id) for n, (c, event_id) in enumerate(out)]


ApprovalKey = tuple[str, str]  # (ARN, event id of the stretch's first Approved change)


def true_approvals(packages: list[list[Change]]) -> dict[str, ApprovalKey]:
    """The oracle: each Approved change's event id → the approval it belongs to, an approval
    being a maximal stretch of Approved in the package's true timeline (a tie at the same time
    orders the other status first, as decision.py does)."""
    owner: dict[str, ApprovalKey] = {}
    for timeline in packages:
        ordered = sorted(timeline, key=lambda c: (c.at, c.status == APPROVED))
        key, previous = None, None
        for change in ordered:
            if change.status == APPROVED:
                if previous != APPROVED:
                    key = (change.arn, change.event_id)
                assert key is not None
                owner[change.event_id] = key
            previous = change.status
    return owner


# -- the harness: queue, pollers, execution environments -----------------------------------


class InvocationFailed(Exception):
    """What the poller sees when the runtime died: the message stays in the queue."""


@dataclass
class Attempt:
    """One invocation, as the harness follows it."""

    message_id: str
    receives: int
    slept: float = 0.0  # seconds of (fake) sleep: they count against the Lambda's timeout
    in_progress: list[tuple[str, str]] = field(default_factory=list)  # (record id, expiry)


class VirtualContext(LocalContext):
    """The Lambda context of one invocation: the function's timeout, less the time it slept."""

    def __init__(self, timeout_seconds: float, attempt: Attempt) -> None:
        super().__init__(timeout_seconds)
        self._attempt = attempt

    def get_remaining_time_in_millis(self) -> int:
        return max(0, super().get_remaining_time_in_millis() - int(self._attempt.slept * 1000))


class Poller(EventSourceMapping):
    """The event source mapping's poller for one concurrent invocation (the queue ARN read
    once, not per poll)."""

    def _arn(self) -> str:
        if "_queue_arn" not in self.__dict__:
            self.__dict__["_queue_arn"] = super()._arn()
        return str(self.__dict__["_queue_arn"])


class Environment:
    """One Lambda execution environment: the runtime built as the deployed handler builds it
    (``build_runtime`` from the function's environment), on a session whose calls are steps of
    the current invocation; Azure DevOps through a counting session; a fake, recording sleep."""

    def __init__(self, world: World, name: str) -> None:
        self.world, self.name = world, name
        # its own botocore session (event hooks, clients); the service models read once
        core = botocore.session.get_session()
        core.register_component("data_loader", world.loader)
        session = boto3.Session(botocore_session=core, region_name=REGION)
        install_boto3_steps(session)
        session.events.register("before-parameter-build.dynamodb.PutItem", world.note_in_progress)
        self.runtime = build_runtime(world.settings, session=session)
        self.runtime.http = StepSession(before=self._before_request, after=self._answer)
        self.runtime.sleep = self._sleep
        self.pending_429: float | None = None
        self.sign_in_pages = self.requests = 0

    def _before_request(self, method: str, url: str) -> None:
        self.requests += 1
        if self.pending_429 is not None:
            self.world.problem(f"{self.name}: sent {method} after a 429 without waiting")
            self.pending_429 = None

    def _answer(self, response: requests.Response) -> None:
        if response.status_code == 203:
            self.sign_in_pages += 1
        if response.status_code == 429:
            self.pending_429 = float(response.headers["Retry-After"])
            self.world.count("429 answered")

    def _sleep(self, seconds: float) -> None:
        attempt = self.world.attempt()
        if attempt is not None:
            attempt.slept += seconds
        if self.pending_429 is None:
            self.world.count("back-off waits (5xx, time-outs, resets)")
            return
        if seconds == self.pending_429:
            self.world.count("429 honoured (slept exactly Retry-After)")
        else:
            self.world.problem(f"{self.name}: slept {seconds}s after a 429 of {self.pending_429}s")
        self.pending_429 = None

    def end_invocation(self) -> None:
        if self.pending_429 is not None:  # no time (or attempt) left to wait: the queue retries
            self.world.count("429 not waited: invocation failed, message delivered again")
            self.pending_429 = None

    @property
    def secret_reads(self) -> int:
        return self.runtime.credential.secret_reads


@dataclass
class Slot:
    """One of the MaximumConcurrency invocation slots and its current environment."""

    environment: Environment


class World:
    def __init__(
        self,
        mock: responses.RequestsMock,
        seed: int,
        packages: list[list[Change]],
        *,
        outage: bool = True,
        rotate: bool = True,
    ) -> None:
        self.seed, self.packages = seed, packages
        self.deliveries = deliveries(seed, packages)
        self.owner = true_approvals(packages)
        for d in self.deliveries:  # a change sent again with a new id belongs to its approval
            if d.change.status == APPROVED:
                self.owner[d.event_id] = self.owner[d.change.event_id]
        self.expected = set(self.owner.values())
        self.lock = threading.RLock()
        self._local = threading.local()
        self.loader = botocore.loaders.create_loader()
        self.counts: Counter[str] = Counter()
        self.problems: list[str] = []
        self.thread_errors: list[BaseException] = []

        session = boto3.Session(region_name=REGION)
        self.sqs = session.client("sqs")
        self.dynamodb = session.client("dynamodb")
        self.secrets = session.client("secretsmanager")
        secret = self.secrets.create_secret(Name="smbridge/azure-devops", SecretString=PAT)
        self.secret_arn = secret["ARN"]
        rendered = Renderer(
            TEMPLATE,
            {
                "AzureDevOpsSecretArn": self.secret_arn,
                "CodeS3Bucket": "smbridge-artifacts",
                "CodeS3Key": "trigger.zip",
                "RoutesJson": json.dumps(ROUTES),
                "ModelPackageGroupNames": ",".join(GROUPS),
            },
            account=ACCOUNT,
            region=REGION,
        )
        queue = rendered.properties("TriggerQueue")
        mapping = rendered.properties("TriggerEventSourceMapping")
        function = rendered.properties("TriggerFunction")
        table = rendered.properties("IdempotencyTable")
        self.max_receives = int(queue["RedrivePolicy"]["maxReceiveCount"])
        self.concurrency = int(mapping["ScalingConfig"]["MaximumConcurrency"])
        self.batch_size = int(mapping["BatchSize"])
        self.timeout = float(function["Timeout"])
        environment = function["Environment"]["Variables"]
        self.settings = TriggerSettings.from_environ(environment)
        self.table = environment["SMBRIDGE_IDEMPOTENCY_TABLE"]
        self.dynamodb.create_table(
            TableName=self.table,
            KeySchema=table["KeySchema"],
            AttributeDefinitions=table["AttributeDefinitions"],
            BillingMode=table["BillingMode"],
        )
        self.dynamodb.update_time_to_live(
            TableName=self.table, TimeToLiveSpecification=table["TimeToLiveSpecification"]
        )
        self.dlq = self.sqs.create_queue(QueueName="smbridge-trigger-dlq")["QueueUrl"]
        redrive = {"deadLetterTargetArn": self._arn(self.dlq), "maxReceiveCount": self.max_receives}
        self.queue = self.sqs.create_queue(
            QueueName="smbridge-trigger",
            Attributes={
                "VisibilityTimeout": str(queue["VisibilityTimeout"]),
                "MessageRetentionPeriod": str(queue["MessageRetentionPeriod"]),
                "RedrivePolicy": json.dumps(redrive),
            },
        )["QueueUrl"]

        self.plan = FaultPlan(seed)
        self.aborts = AbortPlan(seed)
        self.ado = FakeAzureDevOps(
            pat=PAT, fault_policy=self.plan, sign_in_page_despite_suppress=True
        ).install(mock)
        self.rotate, self.rotated = rotate, False
        self.alive_at_rotation: list[Environment] = []
        self.environments: list[Environment] = []
        # the outage: it starts with the first request to its organization and lasts until that
        # invocation's message has been received maxReceiveCount times
        self.victim: str | None = None  # the message id of that first invocation
        self.outage_over = not outage
        if outage:
            self.plan.outage_scope = lambda request: request.path_parts[1] == OUTAGE_ORGANIZATION
            self.plan.outage_trigger = self._starts_outage

        self.delivery_of: dict[str, Delivery] = {}
        self.sent = self.finished = 0
        self.receives: Counter[str] = Counter()
        self.reasons: dict[str, str] = {}
        self.dead_lettered: list[str] = []
        self.outcomes: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()  # failed invocations by kind of error

    def _arn(self, url: str) -> str:
        attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return str(attributes["Attributes"]["QueueArn"])

    # -- bookkeeping (any thread) ---------------------------------------------------------------

    def count(self, what: str, n: int = 1) -> None:
        with self.lock:
            self.counts[what] += n

    def problem(self, text: str) -> None:
        with self.lock:
            self.problems.append(text)

    def attempt(self) -> Attempt | None:
        return getattr(self._local, "attempt", None)

    def note_in_progress(self, params: dict[str, Any], **kwargs: Any) -> None:
        """botocore's ``before-parameter-build`` of PutItem: a record this invocation locks."""
        item, attempt = params.get("Item", {}), self.attempt()
        if attempt is not None and item.get("status", {}).get("S") == "INPROGRESS":
            expiry = item.get("in_progress_expiration", {}).get("N")
            if expiry is not None:
                attempt.in_progress.append((item["id"]["S"], expiry))

    def _expire_locks(self, attempt: Attempt) -> None:
        """The message comes back after the visibility timeout (360 s), past the failed
        invocation's Lambda timeout (60 s): its in-progress locks have expired by then."""
        for record_id, expiry in attempt.in_progress:
            try:
                self.dynamodb.update_item(
                    TableName=self.table,
                    Key={"id": {"S": record_id}},
                    UpdateExpression="SET #lock = :expired",
                    ConditionExpression="#status = :inprogress AND #lock = :mine",
                    ExpressionAttributeNames={
                        "#lock": "in_progress_expiration",
                        "#status": "status",
                    },
                    ExpressionAttributeValues={
                        ":expired": {"N": str(int(time.time() * 1000) - 1)},
                        ":inprogress": {"S": "INPROGRESS"},
                        ":mine": {"N": expiry},
                    },
                )
                self.count("in-progress locks of failed invocations expired")
            except self.dynamodb.exceptions.ConditionalCheckFailedException:
                pass  # completed, deleted, or taken over since

    def _starts_outage(self, operation: str, request: Any) -> bool:
        attempt = self.attempt()
        if attempt is None:  # a request from outside an invocation (the replay): not this one
            return False
        self.victim = attempt.message_id
        return True

    # -- the queue ------------------------------------------------------------------------------

    def top_up(self, sqs: Any) -> None:
        """Events arrive over time: keep about QUEUE_DEPTH of them waiting (moto's receive
        reads every message's attributes, so a deep queue would only make it slow)."""
        with self.lock:
            if self.sent >= len(self.deliveries) or self.sent - self.finished >= QUEUE_DEPTH:
                return
            batch = self.deliveries[self.sent : self.sent + 10]
            answer = sqs.send_message_batch(
                QueueUrl=self.queue,
                Entries=[{"Id": str(d.index), "MessageBody": d.body()} for d in batch],
            )
            assert not answer.get("Failed"), answer.get("Failed")
            for entry in answer["Successful"]:
                self.delivery_of[entry["MessageId"]] = self.deliveries[int(entry["Id"])]
            self.sent += len(batch)

    def done(self) -> bool:
        with self.lock:
            return self.finished >= len(self.deliveries)

    # -- one invocation -------------------------------------------------------------------------

    def invoke(self, slot: Slot, event: dict[str, Any]) -> Any:
        (record,) = event["Records"]
        message_id = record["messageId"]
        receives = int(record["attributes"]["ApproximateReceiveCount"])
        delivery = self.delivery_of[message_id]
        key = f"{delivery.index}/{receives}"
        inv = Invocation(key, self.aborts.draw(key))
        attempt = Attempt(message_id, receives)
        self._local.attempt = attempt
        environment = slot.environment
        failure: str | None = None
        try:
            with invocation(inv):
                result = process(event, VirtualContext(self.timeout, attempt), environment.runtime)
        except RuntimeKilled as exc:
            failure = f"runtime killed ({exc})"
            slot.environment = self.new_environment()  # the next invocation starts cold
            raise InvocationFailed(failure) from None
        except Exception as exc:
            failure = f"{type(exc).__name__}: {exc}"
            raise
        else:
            self._note_outcomes(result)
            return result
        finally:
            self._local.attempt = None
            environment.end_invocation()
            self._after(delivery, attempt, inv, failure)

    def _note_outcomes(self, result: dict[str, Any]) -> None:
        with self.lock:
            for handled in result["results"]:
                if handled.get("runs"):
                    for run in handled["runs"]:
                        self.outcomes[f"approval {run['status']}"] += 1
                else:
                    self.outcomes[f"event {handled['status']}"] += 1

    def _after(
        self, delivery: Delivery, attempt: Attempt, inv: Invocation, failure: str | None
    ) -> None:
        if inv.aborted:
            self.count(f"aborted: {inv.aborted.split(' call ')[0]}")
        if failure is not None:
            self._expire_locks(attempt)
        with self.lock:
            message_id = attempt.message_id
            self.receives[message_id] = max(self.receives[message_id], attempt.receives)
            self.count("invocations")
            if failure is None:
                self.finished += 1
            else:
                self.count("failed invocations (message delivered again)")
                self.failures[failure.split(":")[0].split(" (")[0]] += 1
                self.reasons[message_id] = failure
                if attempt.receives >= self.max_receives:  # the next receive moves it to the DLQ
                    self.finished += 1
                    self.dead_lettered.append(message_id)
            last = failure is None or attempt.receives >= self.max_receives
            if self.victim == message_id and not self.outage_over and last:
                self.plan.end_outage()
                self.outage_over = True
            if self.rotate and not self.rotated and len(self.ado.runs) * 2 >= len(self.expected):
                self._rotate_secret()

    def _rotate_secret(self) -> None:
        """A rotation as Secrets Manager's steps make it: the new PAT exists in Azure DevOps,
        the secret gets it, then the old PAT is revoked (refused with the sign-in page)."""
        new_header = f"Basic {basic_credentials(ROTATED_PAT)}"
        self.ado.accepted_auth.add(new_header)
        self.secrets.put_secret_value(SecretId=self.secret_arn, SecretString=ROTATED_PAT)
        self.ado.pat = ROTATED_PAT
        self.ado.accepted_auth.discard(new_header)
        self.rotated = True
        self.alive_at_rotation = [e for e in self.environments if e.secret_reads > 0]

    def new_environment(self) -> Environment:
        with self.lock:
            environment = Environment(self, f"environment {len(self.environments) + 1}")
            self.environments.append(environment)
            return environment

    # -- running it -----------------------------------------------------------------------------

    def _slot(self) -> None:
        try:
            sqs = boto3.Session(region_name=REGION).client("sqs")
            slot = Slot(self.new_environment())
            poller = Poller(
                sqs, self.queue, lambda event: self.invoke(slot, event), batch_size=self.batch_size
            )
            deadline = time.monotonic() + HANG_GUARD_SECONDS
            while not self.done():
                if time.monotonic() > deadline:
                    raise AssertionError(f"hang guard: the queue did not drain {where()}")
                self.top_up(sqs)
                if not poller.poll_once():
                    time.sleep(0.001)
        except BaseException as exc:  # reported by run()
            self.thread_errors.append(exc)
            with self.lock:
                self.finished = len(self.deliveries)  # stop the other pollers

    def run(self) -> None:
        threads = [threading.Thread(target=self._slot) for _ in range(self.concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self.thread_errors:
            raise self.thread_errors[0]
        # a receive moves the messages received maxReceiveCount times to the DLQ (SQS does it
        # when they would be received once more); nothing else may be left
        left = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10)
        assert left.get("Messages", []) == [], f"messages left in the trigger queue {where()}"
        assert self.queue_depth(self.queue) == 0, where()

    def queue_depth(self, url: str) -> int:
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)
        return sum(int(attributes["Attributes"][n]) for n in names)

    def peek_dead_letters(self) -> list[dict[str, Any]]:
        """The DLQ's messages, left visible (VisibilityTimeout 0) for the replay."""
        answer = self.sqs.receive_message(
            QueueUrl=self.dlq, MaxNumberOfMessages=10, VisibilityTimeout=0
        )
        return answer.get("Messages", [])

    def operator(self) -> Environment:
        """`smbridge trigger replay` on the operator's machine: the same settings, no aborts."""
        environment = self.new_environment()
        environment.name = "replay"
        return environment

    def runs_by_approval(self) -> Counter[ApprovalKey]:
        return Counter(
            self.owner.get(run["templateParameters"]["sourceEventId"], ("?", "?"))
            for run in self.ado.runs
        )


class ReplayQueue:
    """The SQS client handed to ``replay``: it records receipt handles, so that a message the
    replay left in the DLQ (it failed again) can be made visible at once instead of after the
    DLQ's 30 s visibility timeout, as an operator replaying again later would find it."""

    def __init__(self, sqs: Any) -> None:
        self.sqs = sqs
        self.handles: dict[str, str] = {}

    def receive_message(self, **kwargs: Any) -> Any:
        answer = self.sqs.receive_message(**kwargs)
        for message in answer.get("Messages", []):
            self.handles[message["MessageId"]] = message["ReceiptHandle"]
        return answer

    def delete_message(self, **kwargs: Any) -> Any:
        return self.sqs.delete_message(**kwargs)

    def make_visible(self, queue_url: str, message_ids: list[str]) -> None:
        for message_id in message_ids:
            self.sqs.change_message_visibility(
                QueueUrl=queue_url, ReceiptHandle=self.handles[message_id], VisibilityTimeout=0
            )


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count the ``Builds - List`` lookups and the runs they found (each one a duplicate run
    that was not started)."""
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    original = starter.find_existing_run

    def counted(client: Any, request: Any) -> Any:
        found = original(client, request)
        with lock:
            counts["lookups"] += 1
            counts["found"] += found is not None
        return found

    monkeypatch.setattr(starter, "find_existing_run", counted)
    return counts


@pytest.fixture
def world_factory(monkeypatch, atomic_moto, trigger_logs, contract_schemas_checked_once):
    monkeypatch.setenv("POWERTOOLS_IDEMPOTENCY_DISABLED", "false")
    monkeypatch.setenv("MOTO_ACCOUNT_ID", ACCOUNT)
    with mock_aws(), responses.RequestsMock(assert_all_requests_are_fired=False) as mock:

        def make(scale: float = SCALE, **kwargs: Any) -> World:
            size = (max(3, round(200 * scale)), max(15, round(1000 * scale)))
            return World(mock, SEED, timelines(SEED, *size), **kwargs)

        yield make


def test_fault_plan_draws_are_keyed_and_at_the_given_rates():
    """The same request (method, URL, body) at the same attempt gets the same fault in every
    run; over many requests each kind comes at its rate."""
    plan = FaultPlan(SEED)
    kinds = Counter(plan.draw(RUNS, f"request-{n}", 0)[1] for n in range(20_000))
    for kind, rate in (("429", 0.20), ("503", 0.10), ("reset after the run was created", 0.05)):
        assert abs(kinds[kind] / 20_000 - rate) < 0.015, (kind, kinds)
    timeouts = kinds["timeout"] + kinds["timeout after the run was created"]
    assert abs(timeouts / 20_000 - 0.02) < 0.006, kinds
    again = FaultPlan(SEED)
    for n in range(200):
        (first, kind), (second, same) = plan.draw(RUNS, f"r{n}", 3), again.draw(RUNS, f"r{n}", 3)
        assert kind == same
        if first is not None and second is not None:
            assert first.headers.get("Retry-After") == second.headers.get("Retry-After")


def test_the_oracle_counts_approvals_as_decision_py_does():
    """The oracle (written here) and decision.observe agree on every package's true timeline,
    fed in time order."""
    packages = timelines(SEED, PACKAGES, EVENTS)
    owner = true_approvals(packages)
    assert sum(len(t) for t in packages) == EVENTS and len(packages) == PACKAGES
    for timeline in packages:
        state = PackageState()
        for change in sorted(timeline, key=lambda c: (c.at, c.status == APPROVED)):
            state = observe(
                state, Observation(epoch_ms(change.at), change.status, change.event_id)
            ).state
        mine = {owner[c.event_id] for c in timeline if c.status == APPROVED}
        assert len(state.approvals) == len(mine), f"{timeline[0].arn} {where()}"
        assert {a.event_id for a in state.approvals} == {anchor for _, anchor in mine}
    statuses = Counter(c.status for t in packages for c in t)
    reapproved = sum(
        1
        for t in packages
        for a, b in itertools.pairwise(t)
        if a.status == "Rejected" and b.status == APPROVED
    )
    assert statuses["Rejected"] > 0 and reapproved > 0, where()


def test_exactly_one_run_per_approval_under_faults(world_factory, lookups, capfd, monkeypatch):
    world: World = world_factory()
    expected = world.expected
    world.run()

    # -- before the replay: every approval has its run, or a message of its package is in the
    # DLQ, with the reason its last attempt failed
    dead = world.peek_dead_letters()
    assert len(dead) == world.queue_depth(world.dlq) == len(world.dead_lettered), where()
    dead_ids = {m["MessageId"] for m in dead}
    assert dead_ids == set(world.dead_lettered), where()
    dead_arns = {world.delivery_of[m].change.arn for m in dead_ids}
    per_approval = world.runs_by_approval()
    missing = {key for key in expected if per_approval[key] == 0}
    assert {arn for arn, _ in missing} <= dead_arns, f"approvals lost: {missing} {where()}"
    reasons = {m: world.reasons[m] for m in dead_ids}
    for message_id in dead_ids:  # each was tried as often as the template's redrive allows
        assert world.receives[message_id] == world.max_receives, where()

    # the outage: its first message took every receive the template's redrive policy allows
    assert world.victim in dead_ids, f"the outage dead-lettered nothing {where()}"
    assert world.max_receives == int(TEMPLATE["Parameters"]["QueueMaxReceiveCount"]["Default"])
    redrive = world.sqs.get_queue_attributes(
        QueueUrl=world.queue, AttributeNames=["RedrivePolicy"]
    )["Attributes"]["RedrivePolicy"]
    assert json.loads(redrive)["maxReceiveCount"] == world.max_receives == 300

    # -- smbridge trigger replay, same fault rates (the outage is over), until the DLQ is empty
    operator = world.operator()
    queue = ReplayQueue(world.sqs)
    handle_one = local.handle

    def handle_and_settle(event: Any, context: Any, runtime: Any) -> Any:
        try:  # each replayed message is an invocation of its own, as in Lambda
            return handle_one(event, context, runtime)
        finally:
            operator.end_invocation()

    monkeypatch.setattr(local, "handle", handle_and_settle)
    replayed = rounds = 0
    while world.queue_depth(world.dlq) and rounds < 5:
        rounds += 1
        report = replay(queue, world.dlq, operator.runtime)
        replayed += report.handled
        left = [r["messageId"] for r in report.results if "error" in r or r.get("kept")]
        queue.make_visible(world.dlq, left)
    assert world.queue_depth(world.dlq) == 0, f"the replay did not finish {where()}"
    assert replayed == len(dead_ids), where()

    # -- exactly one run per approval, none lost, no duplicate
    per_approval = world.runs_by_approval()
    duplicates = {key: n for key, n in per_approval.items() if n > 1}
    assert duplicates == {}, f"approvals with more than one run: {duplicates} {where()}"
    assert set(per_approval) == expected, f"runs for no approval or lost {where()}"
    assert len(world.ado.runs) == len(expected)
    for run in world.ado.runs:
        params = run["templateParameters"]
        arn, _ = world.owner[params["sourceEventId"]]
        assert params["modelPackageArn"] == arn
        route = ROUTES["routes"].get(params["modelPackageGroupName"], ROUTES["default"])
        assert run["pipelineId"] == route["pipelineId"]
    # the ledger agrees: each package's approvals, each with its run
    runs_of: dict[str, set[int]] = defaultdict(set)
    for run in world.ado.runs:
        runs_of[run["templateParameters"]["modelPackageArn"]].add(run["id"])
    approvals_of = Counter(arn for arn, _ in expected)
    ledger = operator.runtime.ledger
    for arn, count in approvals_of.items():
        state = ledger.state(arn)
        assert len(state.approvals) == count, f"{arn} {where()}"
        assert {a.run_id for a in state.approvals} == runs_of[arn], f"{arn} {where()}"

    # -- the faults happened, and were handled as documented
    served = world.plan.served
    kinds = Counter()
    for (_, kind), n in served.items():
        kinds[kind] += n
    for kind in ("429", "503", "reset after the run was created", "timeout", "outage 503"):
        assert kinds[kind] > 0, f"no {kind} was injected {where()}"
    counts = world.counts
    assert world.problems == [], f"{world.problems[:5]} {where()}"
    assert 0 < counts["429 answered"] <= kinds["429"], where()  # an abort may lose one
    assert (
        counts["429 honoured (slept exactly Retry-After)"]
        + counts["429 not waited: invocation failed, message delivered again"]
        == counts["429 answered"]
    ), where()
    assert counts["429 honoured (slept exactly Retry-After)"] > 0
    assert lookups["found"] > 0, f"no ambiguous POST was resolved by a lookup {where()}"
    assert counts["aborted: killed before"] + counts["aborted: killed after"] > 0, where()
    assert counts["aborted: transport error before"] + counts["aborted: transport error after"] > 0
    # the rotation: each environment that held the old PAT got one sign-in page, read the
    # secret once more and went on; none failed on its credential
    assert world.rotated and world.alive_at_rotation, where()
    for environment in world.environments:
        assert environment.sign_in_pages <= 1, f"{environment.name} {where()}"
        reads = 1 + environment.sign_in_pages if environment.requests else 0
        assert environment.secret_reads == reads, f"{environment.name} {where()}"
    assert sum(e.sign_in_pages for e in world.environments) > 0, where()
    assert "CredentialsError" not in world.failures, world.failures
    out, err = capfd.readouterr()
    for secret in (PAT, ROTATED_PAT):
        for shown in (secret, basic_credentials(secret)):
            assert shown not in out + err, "a credential was written to the output"

    summary = {
        "seed": SEED,
        "scale": SCALE,
        "state changes": EVENTS,
        "model package versions": PACKAGES,
        "deliveries (with duplicates)": len(world.deliveries),
        "approvals (true timelines)": len(expected),
        "runs created": len(world.ado.runs),
        "POST …/runs sent": world.ado.post_count(),
        "Builds - List sent": world.ado.operations().count("Builds_List"),
        "Builds - List lookups": lookups["lookups"],
        "duplicates prevented by Builds - List lookups": lookups["found"],
        "DLQ messages": len(dead_ids),
        "DLQ messages replayed": replayed,
        "replay rounds": rounds,
        "receives of the outage's first message": world.receives[world.victim or ""],
        "DLQ reasons": sorted(set(reasons.values())),
        "environments (cold starts)": len(world.environments),
        "sign-in pages (203) after the rotation": sum(e.sign_in_pages for e in world.environments),
        "faults served": dict(sorted((f"{op}: {kind}", n) for (op, kind), n in served.items())),
        **dict(sorted(counts.items())),
        **dict(sorted(world.outcomes.items())),
        "failed invocations by error": dict(world.failures.most_common()),
    }
    print(json.dumps(summary, indent=1, ensure_ascii=False))


def test_without_the_builds_list_lookup_the_same_faults_make_duplicates(world_factory, monkeypatch):
    """The control: the assertions above can fail. Without ``Builds - List`` before a retry,
    the ambiguous faults (a reset or time-out after the run was created, a runtime killed after
    its POST) start a second run for some approvals. A fifth of the size, no outage."""
    monkeypatch.setattr(starter, "find_existing_run", lambda client, request: None)
    world: World = world_factory(outage=False, rotate=False, scale=0.2)
    world.run()
    per_approval = world.runs_by_approval()
    assert set(per_approval) == world.expected, where()  # none lost even so
    duplicated = sum(1 for n in per_approval.values() if n > 1)
    assert duplicated > 0, f"no duplicate without the lookups: the faults did not bite {where()}"
    assert len(world.ado.runs) > len(world.expected)


def test_replay_goes_on_after_a_message_whose_aws_call_fails(world_factory, monkeypatch):
    """``smbridge trigger replay``: a message whose DynamoDB call fails (the table throttled or
    unreachable) is reported and kept in the DLQ; the others are still handled, and a later
    replay finishes the job (bridge/trigger/local.py: "every other message is still
    handled")."""
    world: World = world_factory(outage=False, rotate=False, scale=0.02)
    world.plan.enabled = False
    approvals = [next(c for c in t if c.status == APPROVED) for t in world.packages[:3]]
    for change in approvals:
        body = json.dumps(change.event(change.event_id))
        world.sqs.send_message(QueueUrl=world.dlq, MessageBody=body)
    operator = world.operator()
    handle_one, calls = local.handle, []

    def handle_with_a_failing_table(event: Any, context: Any, runtime: Any) -> Any:
        calls.append(event)
        abort = Abort(step=1, after=False, kill=False) if len(calls) == 2 else None
        with invocation(Invocation(f"replay/{len(calls)}", abort)):
            return handle_one(event, context, runtime)

    monkeypatch.setattr(local, "handle", handle_with_a_failing_table)
    queue = ReplayQueue(world.sqs)
    report = replay(queue, world.dlq, operator.runtime)
    assert (report.received, report.handled, report.failed) == (3, 2, 1), report.results
    (failed,) = [r for r in report.results if "error" in r]
    assert "EndpointConnectionError" in failed["error"]
    assert len(world.ado.runs) == 2 and world.queue_depth(world.dlq) == 1
    queue.make_visible(world.dlq, [failed["messageId"]])
    again = replay(queue, world.dlq, operator.runtime)
    assert (again.received, again.handled, again.failed) == (1, 1, 0)
    assert len(world.ado.runs) == 3 and world.queue_depth(world.dlq) == 0
