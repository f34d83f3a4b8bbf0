"""N approvals, delivered with duplicates, reordering, rejections and re-approvals, injected
faults and crashes: how many Azure DevOps runs come out? The trigger must make exactly one per
approval and lose none.

    python benchmarks/bench_trigger_delivery.py [--approvals 200] [--seed 7]

Each model package has a timeline of state changes, as SageMaker reports them (one event type
for every change): PendingManualApproval at creation, then Approved; some are rejected and
re-approved (one or two more approvals), some get a description edit while approved. An
approval is a stretch of Approved between other statuses. Every event is delivered 1-3 times
(SageMaker may send a change more than once; EventBridge delivers at least once), all shuffled.

The real handler (aws-lambda-powertools Idempotency on moto's DynamoDB, the ledger, the starter)
against the Azure DevOps stand-in of the tests (tests/support/fake_ado.py; every request checked
against the official OpenAPI specs). The trigger queue is modelled as: a failed invocation is
received again up to 3 more times, then dead-lettered (the deployed queue allows hundreds of
receives: infra/trigger.yaml); the DLQ is replayed once at the end, as `smbridge trigger replay`
would. Baseline, same faults: post a run for every delivered Approved event, plain retries, no
dedupe.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path

import boto3
import responses
from moto import mock_aws

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bridge.azure_devops.client import AzureDevOpsClient, AzureDevOpsError  # noqa: E402
from bridge.azure_devops.credentials import SecretCredential  # noqa: E402
from bridge.trigger.handler import build_runtime, handle, logger  # noqa: E402
from bridge.trigger.local import LocalContext  # noqa: E402
from bridge.trigger.settings import TriggerSettings  # noqa: E402
from tests.support.ado_contract import REFERENCE_DIR  # noqa: E402
from tests.support.fake_ado import FakeAzureDevOps, Fault  # noqa: E402

PAT = "bench-pat"
GROUPS = ("churn-xgb", "fraud-gbm", "ltv-reg")
FAULTS = [
    None, None, None, None,  # most posts succeed
    Fault("status", 429, {"Retry-After": "2"}),
    Fault("status", 500),
    Fault("status", 503, processed=True),
    Fault("timeout"),
    Fault("timeout", processed=True),
    Fault("connection"),
    "crash",  # the Lambda dies after the run was created, before the record is completed
    "crash-before-ledger",  # ... before even the ledger noted the run: found by Builds - List
    "outage",  # more consecutive 502s than one invocation retries: the invocation fails
]  # fmt: skip


def timelines(count: int, rng: random.Random) -> list[list[dict]]:
    """Packages whose state changes hold ``count`` approvals in all, as lists of events."""
    template = json.loads(
        (REFERENCE_DIR / "sagemaker-events/model-package-approved.json").read_text()
    )
    packages: list[list[dict]] = []
    left, n = count, 0
    while left > 0:
        group, version = GROUPS[n % len(GROUPS)], n // len(GROUPS) + 1
        arn = f"arn:aws:sagemaker:eu-west-1:111122223333:model-package/{group}/{version}"
        wanted = min(left, rng.choice([1, 1, 1, 1, 1, 2, 2, 3]))
        statuses = ["PendingManualApproval", "Approved"]
        if rng.random() < 0.3:
            statuses.append("Approved")  # a description edit while approved: same approval
        for _ in range(wanted - 1):
            statuses += [rng.choice(["Rejected", "PendingManualApproval"]), "Approved"]
        events = []
        for step, status in enumerate(statuses):
            event = copy.deepcopy(template)
            event["id"] = f"{n:05d}-{step:02d}"
            event["detail"].update(
                ModelPackageGroupName=group,
                ModelPackageVersion=version,
                ModelPackageArn=arn,
                ModelApprovalStatus=status,
                LastModifiedTime=f"2026-11-20T09:{step:02d}:00Z",
            )
            events.append(event)
        packages.append(events)
        left -= wanted
        n += 1
    return packages


def approval_of(packages: list[list[dict]]) -> dict[str, tuple[str, int]]:
    """Event id → (model package ARN, the approval it belongs to): the oracle."""
    owner = {}
    for events in packages:
        stretch = -1
        previous = None
        for event in events:
            status = event["detail"]["ModelApprovalStatus"]
            if status == "Approved" and previous != "Approved":
                stretch += 1
            if status == "Approved":
                owner[event["id"]] = (event["detail"]["ModelPackageArn"], stretch)
            previous = status
    return owner


def deliveries(packages: list[list[dict]], rng: random.Random) -> list[dict]:
    out = []
    for event in (e for events in packages for e in events):
        for copy_number in range(rng.randint(1, 3)):
            delivered = copy.deepcopy(event)
            delivered["id"] = f"{event['id']}-{copy_number}"
            out.append(delivered)
    rng.shuffle(out)
    return out


def inject(ado: FakeAzureDevOps, rng: random.Random, state: dict) -> None:
    """Draw this invocation's fault: queued on the stand-in, or a crash noted in ``state``."""
    fault = rng.choice(FAULTS)
    if fault in ("crash", "crash-before-ledger"):
        state["crash"] = fault
    elif fault == "outage":
        ado.faults.extend(Fault("status", 502) for _ in range(8))
    elif fault is not None:
        ado.faults.append(copy.deepcopy(fault))


def count_runs(runs: list[dict], owner: dict[str, tuple[str, int]]) -> dict:
    """Runs per approval, from each run's ``sourceEventId`` (the event it was started for)."""
    per_approval = Counter(owner[run["templateParameters"]["sourceEventId"]] for run in runs)
    approvals = set(owner.values())
    return {
        "approvals": len(approvals),
        "runs": len(runs),
        "approvals_with_one_run": sum(1 for a in approvals if per_approval[a] == 1),
        "approvals_lost": sum(1 for a in approvals if per_approval[a] == 0),
    }


def original_id(event_id: str) -> str:
    return event_id.rsplit("-", 1)[0]


def run_bridge(packages: list[list[dict]], rng: random.Random) -> dict:
    owner = approval_of(packages)
    with mock_aws(), responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        session = boto3.Session(region_name="eu-west-1")
        session.client("dynamodb").create_table(
            TableName="idem",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        ado = FakeAzureDevOps(pat=PAT).install(mock)
        settings = TriggerSettings.from_environ({
            "SMBRIDGE_ROUTES": json.dumps({"default": {"organization": "contoso",
                                                       "project": "mlops", "pipelineId": 12}}),
            "SMBRIDGE_ADO_PAT": PAT,
            "SMBRIDGE_IDEMPOTENCY_TABLE": "idem",
        })  # fmt: skip
        runtime = build_runtime(settings, session=session)
        runtime.sleep = lambda seconds: None
        targets = {
            "crash": (runtime.persistence, "save_success"),
            "crash-before-ledger": (runtime.ledger, "record_run"),
        }
        invocations = failures = crashes = 0
        dlq: list[dict] = []
        for event in deliveries(packages, rng):
            for _ in range(4):  # the first receive and up to 3 more before the DLQ
                invocations += 1
                state: dict = {}
                ado.faults.clear()
                inject(ado, rng, state)
                crash = state.get("crash")
                context = LocalContext()
                if crash:

                    def die(*args, **kwargs):
                        raise SystemExit("killed")

                    obj, name = targets[crash]
                    setattr(obj, name, die)
                    context = LocalContext(timeout_seconds=0.001)  # in-progress record expires
                try:
                    handle(event, context, runtime)
                    break
                except SystemExit:
                    crashes += 1
                    time.sleep(0.002)
                except Exception:
                    failures += 1
                finally:
                    if crash:
                        obj, name = targets[crash]
                        delattr(obj, name)  # back to the class's method
            else:
                dlq.append(event)
        ado.faults.clear()
        for event in dlq:  # smbridge trigger replay
            handle(event, LocalContext(), runtime)
        runs = [
            {**run, "templateParameters": {**run["templateParameters"], "sourceEventId":
                                           original_id(run["templateParameters"]["sourceEventId"])}}
            for run in ado.runs
        ]  # fmt: skip
        return {
            **count_runs(runs, owner),
            "events": sum(len(events) for events in packages),
            "invocations": invocations,
            "failed_invocations": failures,
            "crashes": crashes,
            "dead_lettered": len(dlq),
            "ado_requests": len(ado.requests),
        }


def run_baseline(packages: list[list[dict]], rng: random.Random) -> dict:
    """Post a run for every delivered Approved event, retrying transient errors; no dedupe."""
    owner = approval_of(packages)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        ado = FakeAzureDevOps(pat=PAT).install(mock)
        client = AzureDevOpsClient("contoso", SecretCredential(lambda: PAT, source="bench"))
        for event in deliveries(packages, rng):
            detail = event["detail"]
            if detail["ModelApprovalStatus"] != "Approved":
                continue
            for _ in range(4):
                ado.faults.clear()
                inject(ado, rng, {})  # a crash means nothing without idempotency records
                try:
                    client.run_pipeline("mlops", 12, template_parameters={
                        "modelPackageArn": detail["ModelPackageArn"],
                        "modelPackageGroupName": detail["ModelPackageGroupName"],
                        "modelPackageVersion": str(detail["ModelPackageVersion"]),
                        "sourceEventId": original_id(event["id"])})  # fmt: skip
                    break
                except AzureDevOpsError:
                    continue
        return count_runs(ado.runs, owner)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--approvals", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    logger.setLevel("CRITICAL")  # the trigger's per-event JSON logs would drown the table
    packages = timelines(args.approvals, random.Random(args.seed))
    bridge = run_bridge(packages, random.Random(args.seed))
    baseline = run_baseline(packages, random.Random(args.seed))
    print(f"approvals: {bridge['approvals']} in {len(packages)} model packages, "
          f"{bridge['events']} state-change events (seed {args.seed})")  # fmt: skip
    print("| | runs | approvals with exactly one run | approvals lost |")
    print("|---|---|---|---|")
    for name, result in (
        ("smbridge trigger", bridge),
        ("baseline: post + retry, no dedupe", baseline),
    ):
        print(f"| {name} | {result['runs']} | {result['approvals_with_one_run']} | "
              f"{result['approvals_lost']} |")  # fmt: skip
    print(
        f"smbridge: {bridge['invocations']} invocations, {bridge['failed_invocations']} failed "
        f"and retried, {bridge['crashes']} crashes after the run was created, "
        f"{bridge['dead_lettered']} dead-lettered and replayed, {bridge['ado_requests']} "
        "Azure DevOps requests"
    )
    exact = bridge["runs"] == bridge["approvals"] == bridge["approvals_with_one_run"]
    return 0 if exact and bridge["approvals_lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
