"""Throughput and memory of the approval trigger, and memory of ``smbridge pipeline start --wait``,
on loopback: moto's server (bridge/sandbox/aws.py) and the Azure DevOps stand-in over HTTP
(bridge/sandbox/ado_server.py), both in this process; the measured code runs in a child process
of its own (as a Lambda container is separate from DynamoDB and from Azure DevOps).

    python benchmarks/bench_trigger_throughput.py [--sizes 10,100,1000] [--repeat 2] [--polls 600]

For each size N, N approvals (one SageMaker state-change event each, distinct model packages,
one delivery each: the happy path) go through a fresh child, a fresh stand-in and a fresh table:

* ``POST only`` (baseline): ``Runs - Run Pipeline`` sent N times by the bridge's client, nothing
  else: the floor of one run start on this machine.
* ``handler, idempotency off``: the real handler with the in-memory ledger and no idempotency
  records (no DynamoDB).
* ``handler, idempotency on``: the deployed configuration: the DynamoDB ledger and
  aws-lambda-powertools Idempotency on moto's DynamoDB.
* ``through the queue``: the same, fed by Lambda's SQS poller (bridge/sandbox/event_source.py)
  from a moto queue created with the template's settings (receive and delete included; the
  poller reads the queue's ARN once, as Lambda's knows it, where the sandbox's asks SQS on every
  poll); once with one poller, once with two children polling the same queue at once (the event
  source mapping's MaximumConcurrency 2, infra/trigger.yaml).

Rates are approvals per second of the child's processing loop (imports and set-up excluded, no
warm-up: the first calls of a fresh container are in it), for N <= 100 the fastest of
``--repeat`` runs (the machine is shared; larger N run once), printed with their ratio to the
POST-only rate of the same N in the same run. Through the queue, approvals arrive 10 at a time
(one SendMessageBatch, inside the timed loop; its cost is printed) and each 10 is drained before
the next arrives: moto's SQS scans its whole message list on every receive and delete (its cost
per receive + delete at depths 10, 100 and 1,000 is printed), so a 1,000-deep backlog would
measure moto rather than the trigger. Counts are checked: exactly N runs, N distinct
``sourceEventId``, nothing left in the queue or dead-lettered, no request outside the OpenAPI
contract.

Memory: each child reports its peak RSS as ``VmHWM`` of /proc/self/status (the peak of its own
address space; ``ru_maxrss`` would not do: Linux carries the parent's RSS at fork over the exec,
and the parent holds moto). A second pass with tracemalloc, after 5 warm-up approvals, gives
the Python heap the handler allocates while processing N more (peak, and still reachable at the
end, after a garbage collection).

Past the limit: ``--throttled`` approvals through the queue while the stand-in answers 429 with
``Retry-After: 120`` (longer than an invocation may wait) to the first ``--throttled-429s``
requests: the messages return to the queue and are received again; how many runs, dead letters
and requests of each kind come out.

``smbridge pipeline start --wait`` against moto's server, in its own process: peak RSS and
tracemalloc peak, once as moto answers (the execution has Succeeded at the first look), once with
moto reporting ``Executing`` for ``--polls`` looks (``time.sleep`` is a no-op in that child, so a
wait of that many polls, 10 hours at the 60 s maximum interval, takes seconds). Baseline:
``python -c pass``.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

PAT = "bench-throughput-pat-not-real"
GROUPS = ("churn-xgb", "fraud-gbm", "ltv-reg")
REGISTRY_ACCOUNT = "111122223333"
PIPELINE_ID = 12
WARMUP = 5  # approvals processed before tracemalloc starts (traced passes only)
RUN_NUMBER = itertools.count(1)  # a fresh table and queue per run
QUEUE_CHUNK = 10  # approvals that arrive in the queue at once
MODES = {
    "post": "POST only (baseline)",
    "handler": "handler, idempotency off",
    "handler+idem": "handler, idempotency on",
    "queue+idem": "through the queue, idempotency on",
    "queue+idem x2": "through the queue, 2 concurrent pollers",
}


def peak_rss_kib() -> int:
    """VmHWM: the peak resident set of this process's own address space."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


# --------------------------------------------------------------------------- the child


def approval_events(n: int) -> list[dict[str, Any]]:
    """N Approved state changes of N distinct model packages (the reference event's shape)."""
    from bridge.sandbox.ado_contract import REFERENCE_DIR

    template = json.loads(
        (REFERENCE_DIR / "sagemaker-events/model-package-approved.json").read_text()
    )
    events = []
    for i in range(n):
        group, version = GROUPS[i % len(GROUPS)], i // len(GROUPS) + 1
        arn = f"arn:aws:sagemaker:eu-west-1:{REGISTRY_ACCOUNT}:model-package/{group}/{version}"
        event = copy.deepcopy(template)
        event["id"] = f"bench-{i:05d}"
        event["resources"] = [arn]
        event["detail"].update(
            ModelPackageGroupName=group,
            ModelPackageVersion=version,
            ModelPackageArn=arn,
            ModelApprovalStatus="Approved",
            LastModifiedTime=f"2026-11-20T{9 + i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z",
        )
        events.append(event)
    return events


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Process ``spec["n"]`` approvals the way ``spec["mode"]`` says; timings and counts."""
    import gc
    import tracemalloc

    import boto3

    from bridge.azure_devops.client import AzureDevOpsClient
    from bridge.azure_devops.credentials import SecretCredential
    from bridge.sandbox.event_source import EventSourceMapping
    from bridge.trigger.handler import build_runtime, handle, process

    class OnePollerArn(EventSourceMapping):
        """Lambda's poller knows its queue's ARN; the sandbox's asks SQS on every poll."""

        def _arn(self) -> str:
            if not hasattr(self, "_known_arn"):
                self._known_arn = super()._arn()
            return self._known_arn

    from bridge.trigger.local import LocalContext
    from bridge.trigger.settings import TriggerSettings

    mode, n, trace = spec["mode"], spec["n"], spec.get("trace", False)
    warmup = WARMUP if trace else 0
    events = approval_events(n + warmup)
    calls: Counter[str] = Counter()
    session = boto3.Session()
    session.events.register(
        "before-call.*.*", lambda model, **_: calls.update([model.service_model.service_name])
    )
    poller = None
    if mode == "post":
        client = AzureDevOpsClient(spec["organization"], SecretCredential(lambda: PAT, source="b"))

        def one(event: dict[str, Any]) -> None:
            detail = event["detail"]
            client.run_pipeline("mlops", PIPELINE_ID, template_parameters={
                "modelPackageArn": detail["ModelPackageArn"],
                "modelPackageGroupName": detail["ModelPackageGroupName"],
                "modelPackageVersion": str(detail["ModelPackageVersion"]),
                "sourceEventId": event["id"]}, ref_name="refs/heads/main")  # fmt: skip

    else:
        environ = {
            "SMBRIDGE_ROUTES": json.dumps({"default": {"organization": spec["organization"],
                                                       "project": "mlops",
                                                       "pipelineId": PIPELINE_ID}}),
            "SMBRIDGE_ADO_PAT": PAT,
            "SMBRIDGE_REGISTRY_ACCOUNTS": REGISTRY_ACCOUNT,
        }  # fmt: skip
        if spec.get("table"):
            environ["SMBRIDGE_IDEMPOTENCY_TABLE"] = spec["table"]
        runtime = build_runtime(TriggerSettings.from_environ(environ), session=session)

        def one(event: dict[str, Any]) -> None:
            handle(event, LocalContext(), runtime)

        if mode.startswith("queue"):
            poller = OnePollerArn(
                session.client("sqs"),
                spec["queue_url"],
                lambda batch: process(batch, LocalContext(), runtime),
            )

    for event in events[:warmup]:
        one(event)
    if spec.get("ready"):  # two pollers start together
        Path(spec["ready"]).touch()
        while not Path(spec["go"]).exists():
            time.sleep(0.001)
    if trace:
        tracemalloc.start()
    calls.clear()
    started_at, started = time.time(), time.perf_counter()
    sending = 0.0
    if poller is not None:
        # approvals arrive QUEUE_CHUNK at a time (one SendMessageBatch, as EventBridge would
        # put them): this child's share, each chunk drained before the next is sent
        sender = boto3.Session().client("sqs")  # not counted in ``calls``
        first, last = spec.get("share", (0, n))
        for start in range(first, last, QUEUE_CHUNK):
            began = time.perf_counter()
            enqueue_with(sender, spec["queue_url"], events[start : min(start + QUEUE_CHUNK, last)])
            sending += time.perf_counter() - began
            while poller.poll_once():
                pass
    else:
        for event in events[warmup:]:
            one(event)
    elapsed = time.perf_counter() - started
    result: dict[str, Any] = {
        "mode": mode,
        "n": n,
        "seconds": elapsed,
        "started_at": started_at,
        "ended_at": started_at + elapsed,
        "aws_calls": dict(calls),
        "sending_seconds": sending,
        "peak_rss_kib": peak_rss_kib(),
    }
    if trace:
        gc.collect()  # botocore leaves reference cycles per call: held = what stays reachable
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        result.update(traced_peak=peak, traced_held=current)
    if poller is not None:
        result.update(invocations=poller.invocations, failed=len(poller.errors))
    return result


# --------------------------------------------------------------------------- the parent


def child_command(spec: dict[str, Any], out: str) -> list[str]:
    return [sys.executable, __file__, "--child", json.dumps({**spec, "out": out})]


def run_children(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run the children at once (released together when more than one); their results."""
    with tempfile.TemporaryDirectory(prefix="smbridge-bench-") as tmp:
        go = Path(tmp) / "go"
        if len(specs) > 1:
            specs = [{**s, "ready": f"{tmp}/ready-{i}", "go": str(go)} for i, s in enumerate(specs)]
        outs = [f"{tmp}/out-{i}.json" for i in range(len(specs))]
        processes = [
            subprocess.Popen(
                child_command(spec, out),
                env=os.environ.copy(),  # the emulator's AWS_* variables (aws_emulator sets them)
                stdout=subprocess.DEVNULL,  # the trigger's JSON logs (CloudWatch in Lambda)
                stderr=subprocess.PIPE,
                text=True,
            )
            for spec, out in zip(specs, outs, strict=True)
        ]
        if len(specs) > 1:
            while not all(Path(s["ready"]).exists() for s in specs):
                if any(p.poll() is not None for p in processes):
                    break
                time.sleep(0.005)
            go.touch()
        for spec, process in zip(specs, processes, strict=True):
            _, stderr = process.communicate()
            if process.returncode != 0:
                raise SystemExit(f"child {spec['mode']} n={spec['n']} failed:\n{stderr}")
        return [json.loads(Path(out).read_text()) for out in outs]


def create_table(aws: Any, name: str) -> None:
    aws.client("dynamodb").create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def create_queue(aws: Any, name: str) -> tuple[str, str]:
    """The trigger queue and its dead-letter queue with infra/trigger.yaml's settings."""
    from bridge.sandbox.cfn import Renderer, load_template

    template = load_template(REPO_ROOT / "infra" / "trigger.yaml")
    queue = Renderer(template, {
        "AzureDevOpsSecretArn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:a-AbCdEf",
        "CodeS3Bucket": "smbridge-artifacts", "CodeS3Key": "trigger.zip", "RoutesJson": "{}",
    }).properties("TriggerQueue")  # fmt: skip
    sqs = aws.client("sqs")
    dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = {
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": int(queue["RedrivePolicy"]["maxReceiveCount"]),
    }
    url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": str(queue["VisibilityTimeout"]),
            "MessageRetentionPeriod": str(queue["MessageRetentionPeriod"]),
            "RedrivePolicy": json.dumps(redrive),
        },
    )["QueueUrl"]
    return url, dlq


def enqueue(aws: Any, url: str, events: list[dict[str, Any]]) -> int:
    return enqueue_with(aws.client("sqs"), url, events)


def enqueue_with(sqs: Any, url: str, events: list[dict[str, Any]]) -> int:
    for start in range(0, len(events), 10):
        batch = events[start : start + 10]
        sqs.send_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(i), "MessageBody": json.dumps(e)} for i, e in enumerate(batch)],
        )
    return len(events)


def moto_sqs_cost(aws: Any, depths: tuple[int, ...] = (10, 100, 1000)) -> dict[int, float]:
    """Seconds per receive + delete of one message in a moto queue holding ``depth``."""
    events = approval_events(max(depths))
    sqs = aws.client("sqs")
    cost = {}
    for depth in depths:
        url = sqs.create_queue(QueueName=f"depth-{depth}")["QueueUrl"]
        enqueue(aws, url, events[:depth])
        looks = min(depth, 20)
        started = time.perf_counter()
        for _ in range(looks):
            (message,) = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)["Messages"]
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        cost[depth] = (time.perf_counter() - started) / looks
    return cost


def queue_depth(aws: Any, url: str) -> int:
    attributes = aws.client("sqs").get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(v) for v in attributes.values())


def one_run(aws: Any, mode: str, n: int, *, trace: bool = False, throttle: int = 0) -> dict:
    """A fresh stand-in, table and queue; the child(ren); the counts checked."""
    from bridge.sandbox.ado_server import AzureDevOpsServer
    from bridge.sandbox.azure_devops import AzureDevOpsStandIn

    stand_in = AzureDevOpsStandIn.for_pipeline_yaml(pat=PAT)
    tag = f"{mode.replace('+', '-').replace(' ', '')}-{n}-{next(RUN_NUMBER)}"
    base, pollers = mode.split(" x")[0], int(mode.split(" x")[1]) if " x" in mode else 1
    spec: dict[str, Any] = {"mode": base, "n": n, "trace": trace}
    if base.endswith("+idem"):
        spec["table"] = f"idem-{tag}"
        create_table(aws, spec["table"])
    dlq = None
    if base.startswith("queue"):
        spec["queue_url"], dlq = create_queue(aws, f"trigger-{tag}")
    if throttle:
        stand_in.throttle(count=throttle, retry_after=120)
    with AzureDevOpsServer(stand_in) as server:
        spec["organization"] = server.organization_url("contoso")
        shares = [(n * i // pollers, n * (i + 1) // pollers) for i in range(pollers)]
        children = run_children([{**spec, "share": share} for share in shares])
    result = dict(children[0])
    if pollers > 1:
        result["seconds"] = max(c["ended_at"] for c in children) - min(
            c["started_at"] for c in children
        )
        result["aws_calls"] = dict(sum((Counter(c["aws_calls"]) for c in children), Counter()))
        result["invocations"] = sum(c["invocations"] for c in children)
        result["failed"] = sum(c["failed"] for c in children)
        result["per_poller"] = [c["invocations"] for c in children]
        result["sending_seconds"] = sum(c["sending_seconds"] for c in children)
    expected = n + (WARMUP if trace else 0)
    sources = [run["templateParameters"]["sourceEventId"] for run in stand_in.runs]
    result["runs"] = len(sources)
    result["ado_requests"] = dict(Counter(stand_in.operations()))
    problems = []
    if len(sources) != expected or len(set(sources)) != expected:
        problems.append(f"{len(sources)} runs, {len(set(sources))} distinct, for {expected}")
    if stand_in.violations:
        problems.append(f"contract violations: {stand_in.violations[:3]}")
    if dlq is not None:
        result["dead_lettered"] = queue_depth(aws, dlq)
        result["left_in_queue"] = queue_depth(aws, spec["queue_url"])
        if result["dead_lettered"] or result["left_in_queue"]:
            problems.append(
                f"dead-lettered {result['dead_lettered']}, left {result['left_in_queue']}"
            )
    if problems:
        raise SystemExit(f"{mode} n={n}: " + "; ".join(problems))
    return result


# --------------------------------------------------------------------------- start --wait


CLI_RUNNER = """
import json, sys, time
sleep, trace, out, argv = sys.argv[1], sys.argv[2] == "trace", sys.argv[3], sys.argv[4:]
if sleep == "nosleep":
    time.sleep = lambda seconds: None  # before bridge is imported: the poller's default sleep
if trace:
    import tracemalloc
    tracemalloc.start()
code = 0
if argv:
    from bridge.cli.app import main
    code = main(argv)
result = {"code": code}
if trace:
    import gc
    gc.collect()
    result["traced_held"], result["traced_peak"] = tracemalloc.get_traced_memory()
status = open("/proc/self/status").read().splitlines()
result["peak_rss_kib"] = int(next(l for l in status if l.startswith("VmHWM:")).split()[1])
open(out, "w").write(json.dumps(result))
"""


def run_cli(argv: list[str], *, cwd: Path, sleep: bool, trace: bool) -> tuple[dict, str]:
    with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
        completed = subprocess.run(
            [sys.executable, "-c", CLI_RUNNER, "sleep" if sleep else "nosleep",
             "trace" if trace else "-", out.name, *argv],
            cwd=cwd, env=os.environ.copy(), capture_output=True, text=True, check=False,
        )  # fmt: skip
        if completed.returncode != 0:
            raise SystemExit(f"{argv}: exited {completed.returncode}: {completed.stderr[-800:]}")
        return json.loads(Path(out.name).read_text()), completed.stdout


class ExecutingFor:
    """moto's DescribePipelineExecution says ``Executing`` for the first ``looks`` looks at an
    execution (moto's executions have Succeeded at once)."""

    def __init__(self, looks: int) -> None:
        self.looks: int = looks
        self.seen: Counter[str] = Counter()

    def __enter__(self) -> ExecutingFor:
        from moto.sagemaker.models import SageMakerModelBackend

        self.original = original = SageMakerModelBackend.describe_pipeline_execution
        patch = self

        def describe(backend: Any, arn: str) -> dict[str, Any]:
            answer = original(backend, arn)
            patch.seen[arn] += 1
            if patch.seen[arn] <= patch.looks:
                answer["PipelineExecutionStatus"] = "Executing"
            return answer

        SageMakerModelBackend.describe_pipeline_execution = describe  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: Any) -> None:
        from moto.sagemaker.models import SageMakerModelBackend

        SageMakerModelBackend.describe_pipeline_execution = self.original  # type: ignore[method-assign]


def start_wait_memory(aws: Any, polls: int) -> list[dict[str, Any]]:
    sm = aws.client("sagemaker")
    definition = {
        "Version": "2020-12-01",
        "Steps": [],
        "Parameters": [{"Name": "AucThreshold", "Type": "Float", "DefaultValue": 0.9}],
    }
    role = "arn:aws:iam::123456789012:role/smbridge-sagemaker-execution"
    sm.create_pipeline(
        PipelineName="bench-build", PipelineDefinition=json.dumps(definition), RoleArn=role
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="smbridge-bench-") as tmp:
        work = Path(tmp)
        (work / "bridge.yaml").write_text("region: eu-west-1\npipeline:\n  name: bench-build\n")
        baseline, _ = run_cli([], cwd=work, sleep=True, trace=False)
        rows.append({"what": "python -c pass (baseline)", **baseline, "looks": 0})
        argv = ["pipeline", "start", "--wait", "-o", "json"]
        for looks in (0, polls):
            with ExecutingFor(looks) as patch:
                plain, stdout = run_cli(argv, cwd=work, sleep=looks == 0, trace=False)
                if plain["code"] != 0 or json.loads(stdout)["status"] != "Succeeded":
                    raise SystemExit(f"start --wait exited {plain['code']}: {stdout[-500:]}")
                seen = sum(patch.seen.values())
            with ExecutingFor(looks):
                traced, _ = run_cli(argv, cwd=work, sleep=looks == 0, trace=True)
            what = f" ({seen} looks, no sleep)" if looks else " (Succeeded at the first look)"
            rows.append({
                "what": "smbridge pipeline start --wait" + what,
                "peak_rss_kib": plain["peak_rss_kib"], "looks": seen,
                "traced_peak": traced["traced_peak"], "traced_held": traced["traced_held"],
            })  # fmt: skip
    return rows


# --------------------------------------------------------------------------- report


def mib(kib: float) -> str:
    return f"{kib / 1024:.1f}"


def report(args: argparse.Namespace, sizes: list[int], measured: dict[str, Any]) -> None:
    results, idle, traced = measured["results"], measured["idle"], measured["traced"]
    print(f"## approvals per second (ratio to POST only at the same N); sizes {sizes}")
    print("| | " + " | ".join(f"N = {n:,}" for n in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for mode, name in MODES.items():
        cells = []
        for n in sizes:
            rate = n / results[(mode, n)]["seconds"]
            base = n / results[("post", n)]["seconds"]
            cells.append(f"{rate:,.0f}/s ({rate / base:.2f}x)")
        print(f"| {name} | " + " | ".join(cells) + " |")
    if "moto_sqs" in measured:
        costs = ", ".join(
            f"{1000 * c:.1f} ms at depth {d:,}" for d, c in measured["moto_sqs"].items()
        )
        print(f"(moto's SQS, one receive + delete: {costs})")
    print()
    big = sizes[-1]
    print(f"## per approval (N = {big:,})")
    for mode in MODES:
        r = results[(mode, big)]
        per = {k: round(v / big, 2) for k, v in sorted(r["aws_calls"].items())}
        extra = f", invocations per poller {r['per_poller']}" if "per_poller" in r else ""
        if r.get("sending_seconds"):
            extra += f", of which sending {1000 * r['sending_seconds'] / big:.2f} ms"
        print(f"{MODES[mode]}: {1000 * r['seconds'] / big:.2f} ms, AWS calls {per}, "
              f"Azure DevOps requests {r['ado_requests']}{extra}")  # fmt: skip
    print()
    print("## handler memory, idempotency on (own process)")
    print("| N | peak RSS (MiB) | ratio to N = 0 | tracemalloc peak while processing N (KiB) | "
          "still held after (KiB) |")  # fmt: skip
    print("|---|---|---|---|---|")
    print(f"| 0 (imports and runtime only) | {mib(idle['peak_rss_kib'])} | 1.00x | | |")
    for n in sizes:
        r, t = results[("handler+idem", n)], traced[n]
        print(f"| {n:,} | {mib(r['peak_rss_kib'])} | "
              f"{r['peak_rss_kib'] / idle['peak_rss_kib']:.2f}x | "
              f"{t['traced_peak'] / 1024:,.0f} | {t['traced_held'] / 1024:,.0f} |")  # fmt: skip
    print()
    t = measured["throttled"]
    print(f"## past the limit: {args.throttled} approvals through the queue, the first "
          f"{args.throttled_429s} requests answered 429 Retry-After: 120")  # fmt: skip
    print(f"runs {t['runs']}, invocations {t['invocations']} ({t['failed']} failed and returned "
          f"to the queue), dead-lettered {t['dead_lettered']}, left in the queue "
          f"{t['left_in_queue']}, Azure DevOps requests {t['ado_requests']}")  # fmt: skip
    print()
    rows = measured["start_wait"]
    print("## smbridge pipeline start --wait against moto's server (own process)")
    print("| | peak RSS (MiB) | ratio to baseline | tracemalloc peak (MiB) | held at exit (MiB) |")
    print("|---|---|---|---|---|")
    base = rows[0]["peak_rss_kib"]
    for row in rows:
        cells = (
            f"{row['traced_peak'] / 2**20:.1f} | {row['traced_held'] / 2**20:.1f}"
            if "traced_peak" in row
            else " | "
        )
        print(f"| {row['what']} | {mib(row['peak_rss_kib'])} | "
              f"{row['peak_rss_kib'] / base:.2f}x | {cells} |")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child")
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--polls", type=int, default=600)
    parser.add_argument("--throttled", type=int, default=100)
    parser.add_argument("--throttled-429s", type=int, default=40)
    parser.add_argument(
        "--repeat", type=int, default=2, help="runs per rate for N <= 100; the fastest counts"
    )
    args = parser.parse_args()
    if args.child:
        spec = json.loads(args.child)
        Path(spec["out"]).write_text(json.dumps(child(spec)))
        return 0

    import logging

    from bridge.sandbox.aws import aws_emulator

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    os.environ.pop("POWERTOOLS_IDEMPOTENCY_DISABLED", None)  # idempotency on where configured
    sizes = [int(s) for s in args.sizes.split(",")]
    began = time.monotonic()
    measured: dict[str, Any] = {}

    def phase(name: str) -> None:
        print(f"[{time.monotonic() - began:5.0f} s] {name}", file=sys.stderr, flush=True)

    with aws_emulator() as aws:
        phase("rates")
        measured["idle"] = one_run(aws, "handler+idem", 0)
        measured["results"] = {
            (m, n): min((one_run(aws, m, n) for _ in range(args.repeat if n <= 100 else 1)),
                        key=lambda r: r["seconds"])
            for n in sizes
            for m in MODES
        }  # fmt: skip
        phase("tracemalloc")
        measured["traced"] = {n: one_run(aws, "handler+idem", n, trace=True) for n in sizes}
        phase("throttled")
        measured["throttled"] = one_run(
            aws, "queue+idem", args.throttled, throttle=args.throttled_429s
        )
        measured["moto_sqs"] = moto_sqs_cost(aws)
        phase("start --wait")
        measured["start_wait"] = start_wait_memory(aws, args.polls)
    report(args, sizes, measured)
    print()
    print(f"(whole benchmark: {time.monotonic() - began:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
