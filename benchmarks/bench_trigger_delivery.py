"""N approvals, delivered with duplicates, reordering, injected faults and crashes: how many
Azure DevOps runs come out? The trigger must make exactly N and lose none.

    python benchmarks/bench_trigger_delivery.py [--approvals 200] [--seed 7]

The real handler (aws-lambda-powertools Idempotency on moto's DynamoDB, the ledger, the starter)
against the Azure DevOps stand-in of the tests (tests/support/fake_ado.py; every request checked
against the official OpenAPI specs). EventBridge is modelled as: each event delivered 1-3 times
in shuffled order, a failed invocation retried up to 3 more times, then dead-lettered; the DLQ
is replayed once at the end, as `smbridge trigger replay` would. Baseline, same faults: a
handler that posts the run with plain retries and no dedupe.
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
from bridge.trigger.handler import build_runtime, handle  # noqa: E402
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
    "outage",  # more consecutive 502s than one invocation retries: the invocation fails
]  # fmt: skip


def approvals(count: int) -> list[dict]:
    template = json.loads(
        (REFERENCE_DIR / "sagemaker-events/model-package-approved.json").read_text()
    )
    events = []
    for n in range(count):
        group, version = GROUPS[n % len(GROUPS)], n // len(GROUPS) + 1
        event = copy.deepcopy(template)
        arn = f"arn:aws:sagemaker:eu-west-1:111122223333:model-package/{group}/{version}"
        event["detail"].update(
            ModelPackageGroupName=group, ModelPackageVersion=version, ModelPackageArn=arn
        )
        events.append(event)
    return events


def deliveries(events: list[dict], rng: random.Random) -> list[dict]:
    out = []
    for event in events:
        for copy_number in range(rng.randint(1, 3)):
            delivered = copy.deepcopy(event)
            delivered["id"] = f"{event['detail']['ModelPackageArn']}#{copy_number}"
            out.append(delivered)
    rng.shuffle(out)
    return out


def inject(ado: FakeAzureDevOps, rng: random.Random, state: dict) -> None:
    """Draw this invocation's fault: queued on the stand-in, or a crash noted in ``state``."""
    fault = rng.choice(FAULTS)
    if fault == "crash":
        state["crash"] = True
    elif fault == "outage":
        ado.faults.extend(Fault("status", 502) for _ in range(8))
    elif fault is not None:
        ado.faults.append(copy.deepcopy(fault))


def run_bridge(events: list[dict], rng: random.Random) -> dict:
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
        persistence = runtime.persistence
        original_save_success = persistence.save_success
        invocations = failures = crashes = 0
        dlq: list[dict] = []
        for event in deliveries(events, rng):
            for _ in range(4):  # the first delivery and up to 3 EventBridge retries
                invocations += 1
                state: dict = {}
                ado.faults.clear()
                inject(ado, rng, state)
                if state.get("crash"):

                    def crash(*args, **kwargs):
                        raise SystemExit("killed")

                    persistence.save_success = crash
                    context = LocalContext(
                        timeout_seconds=0.001
                    )  # in-progress record expires at once
                else:
                    persistence.save_success = original_save_success
                    context = LocalContext()
                try:
                    handle(event, context, runtime)
                    break
                except SystemExit:
                    crashes += 1
                    time.sleep(0.002)
                except Exception:
                    failures += 1
                finally:
                    persistence.save_success = original_save_success
            else:
                dlq.append(event)
        ado.faults.clear()
        for event in dlq:  # smbridge trigger replay
            handle(event, LocalContext(), runtime)
        runs = Counter(run["templateParameters"]["modelPackageArn"] for run in ado.runs)
        return {
            "invocations": invocations,
            "failed_invocations": failures,
            "crashes": crashes,
            "dead_lettered": len(dlq),
            "runs": sum(runs.values()),
            "approvals_with_one_run": sum(1 for n in runs.values() if n == 1),
            "approvals_lost": len(events) - len(runs),
            "ado_requests": len(ado.requests),
        }


def run_baseline(events: list[dict], rng: random.Random) -> dict:
    """Post a run for every delivered Approved event, retrying transient errors; no dedupe."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        ado = FakeAzureDevOps(pat=PAT).install(mock)
        client = AzureDevOpsClient("contoso", SecretCredential(lambda: PAT, source="bench"))
        for event in deliveries(events, rng):
            detail = event["detail"]
            for _ in range(4):
                ado.faults.clear()
                inject(ado, rng, {})  # a crash means nothing without idempotency records
                try:
                    client.run_pipeline("mlops", 12, template_parameters={
                        "modelPackageArn": detail["ModelPackageArn"],
                        "modelPackageGroupName": detail["ModelPackageGroupName"],
                        "modelPackageVersion": str(detail["ModelPackageVersion"]),
                        "sourceEventId": event["id"]})  # fmt: skip
                    break
                except AzureDevOpsError:
                    continue
        runs = Counter(run["templateParameters"]["modelPackageArn"] for run in ado.runs)
        return {
            "runs": sum(runs.values()),
            "approvals_with_one_run": sum(1 for n in runs.values() if n == 1),
            "approvals_lost": len(events) - len(runs),
        }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--approvals", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    events = approvals(args.approvals)
    bridge = run_bridge(events, random.Random(args.seed))
    baseline = run_baseline(events, random.Random(args.seed))
    print(f"approvals: {args.approvals} (seed {args.seed})")
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
    exact = bridge["runs"] == args.approvals == bridge["approvals_with_one_run"]
    return 0 if exact and bridge["approvals_lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
