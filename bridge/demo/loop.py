"""``smbridge demo``: the whole loop on this machine, through the code production runs.

A local AWS (moto's server), the Azure DevOps stand-in and a model server, all on 127.0.0.1; then
the loop: model-build's steps train and evaluate the model on the bundled data (a real AUC);
``smbridge pipeline upsert`` and ``start --wait`` (the definition built with the SageMaker SDK);
the version registered with its metrics and approved in the registry; SageMaker's state-change
event put on the bus, matched by the trigger rule of infra/trigger.yaml, queued, and handled by
the trigger, which starts a model-deploy run in the stand-in; then model-deploy's stages: prepare,
deploy staging, test staging against an endpoint serving the trained model, the production gate
(a pending approval, decided by a named reviewer with ``smbridge ado approvals``), deploy
production and its smoke test.

What is emulated: SageMaker jobs do not run in moto (the demo runs the steps' scripts itself and
registers the version as the pipeline's RegisterModel step would); CloudFormation in moto skips
alarms and auto scaling; EventBridge invokes no Lambda (the SQS poller is ours); the stand-in is
not Azure DevOps (it implements the endpoints the bridge uses, holding each request to the
OpenAPI specs); IAM is not enforced.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from bridge.errors import BridgeError, UserError

GROUP = "smbridge-demo"
ORGANIZATION = "contoso"
PROJECT = "mlops"
# the project's GUID: the agent's System.OidcRequestUri names the project by id
PROJECT_ID = "8d3c5b2a-1f4e-4a6b-9c8d-7e6f5a4b3c2d"
DEPLOY_PIPELINE_ID = 12
STAGE_ACCOUNTS = {"staging": "222222222222", "production": "333333333333"}
# AWS's XGBoost image in eu-west-1 (what model-build/pipeline.py's image_uris.retrieve returns)
XGBOOST_IMAGE = "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-xgboost:1.7-1"
TRIGGER_PAT = "sandbox-trigger-pat-not-real"
REVIEWER_PAT = "sandbox-reviewer-pat-not-real"
JOB_ACCESS_TOKEN = "sandbox-job-token-not-real"
EMULATED = (
    "AWS is moto's server on 127.0.0.1: SageMaker jobs do not run there (the demo runs the "
    "steps' scripts itself and registers the version as the pipeline's RegisterModel step "
    "would), CloudFormation skips alarms and auto scaling, IAM is not enforced",
    "EventBridge matches the trigger rule's own pattern and delivers to its queue; Lambda's SQS "
    "poller is the sandbox's (moto invokes no Lambda)",
    "Azure DevOps is a stand-in on 127.0.0.1, not the service: only the endpoints the bridge "
    "uses, each request checked against Microsoft's OpenAPI specs",
    "the endpoints are a local model server answering InvokeEndpoint with the trained model",
)


def repository_root() -> Path:
    """The clone this package runs from (the demo needs model-build/, model-deploy/, infra/)."""
    root = Path(__file__).resolve().parents[2]
    needed = ("model-build", "model-deploy", "infra", "azure-pipelines", "reference")
    if not all((root / name).is_dir() for name in needed):
        raise UserError(
            "smbridge demo runs from a clone of the smbridge repository (it needs model-build/, "
            "model-deploy/, infra/): git clone it and pip install -e '.[demo]' there"
        )
    return root


@dataclass(frozen=True)
class DemoOptions:
    """What to vary in the loop (the end-to-end tests use each)."""

    auc_threshold: float = 0.9
    break_staging: bool = False  # the staging endpoint answers wrong predictions
    reject_production: bool = False  # the reviewer rejects the production approval
    duplicate_event: bool = False  # SageMaker's event delivered twice
    reapprove: bool = False  # rejected in the registry after approval, then approved again
    reviewer: str = "Dana Reviewer"
    work_dir: Path | None = None
    verbose: bool = False


@dataclass
class StepRecord:
    name: str
    seconds: float
    ok: bool
    result: str


@dataclass
class DemoResult:
    steps: list[StepRecord] = field(default_factory=list)
    auc: float | None = None
    model_package_arn: str | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)
    stacks: dict[str, list[str]] = field(default_factory=dict)
    endpoints: dict[str, str] = field(default_factory=dict)
    production_approval: str | None = None
    violations: list[str] = field(default_factory=list)
    outcome: str = ""
    ok: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "outcome": self.outcome,
            "auc": self.auc,
            "model_package_arn": self.model_package_arn,
            "runs": [
                {"id": r.get("id"), "templateParameters": r.get("templateParameters", {})}
                for r in self.runs
            ],
            "stacks": self.stacks,
            "endpoints": self.endpoints,
            "production_approval": self.production_approval,
            "violations": self.violations,
            "steps": [vars(step) for step in self.steps],
        }


class StepFailed(BridgeError):
    """A step of the demo failed (its command's exit code is kept)."""

    exit_code = 1
    meaning = "failure"

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class _Timeline:
    """Each step once: its name, duration and result, as it finishes."""

    def __init__(self, out: TextIO, result: DemoResult) -> None:
        self.out, self.result = out, result
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[list[str]]:
        began = time.monotonic()
        note: list[str] = []
        try:
            yield note
        except StepFailed as exc:
            self._record(name, began, False, str(exc))
            raise
        except BridgeError as exc:
            self._record(name, began, False, str(exc))
            raise StepFailed(f"{name}: {exc}", getattr(exc, "exit_code", 1)) from None
        self._record(name, began, True, note[0] if note else "done")

    def _record(self, name: str, began: float, ok: bool, text: str) -> None:
        seconds = time.monotonic() - began
        self.result.steps.append(StepRecord(name, round(seconds, 2), ok, text))
        mark = "ok  " if ok else "FAIL"
        self.say(f"  {mark} {seconds:5.1f}s  {name}: {text}")


# -- running the CLI in-process -------------------------------------------------------------------

_OUTPUT_VARIABLE = re.compile(r"##vso\[task\.setvariable variable=(\w+);isoutput=true\](.*)")


@dataclass
class CliRun:
    code: int
    out: str
    err: str

    @property
    def outputs(self) -> dict[str, str]:
        """Output variables, read from the logging commands as the agent reads them."""
        return dict(_OUTPUT_VARIABLE.findall(self.out))

    def last_error(self) -> str:
        lines = [line for line in (self.err + self.out).splitlines() if line.strip()]
        errors = [line for line in lines if "error" in line.lower()]
        return (errors or lines or ["(no output)"])[-1].strip()


def cli(*argv: str, env: dict[str, str] | None = None, echo: TextIO | None = None) -> CliRun:
    """``smbridge ARGV`` in its own process, as an agent's step runs it: this environment (the
    sandbox's AWS variables included) plus ``env``; its output captured (``echo``: also shown)."""
    completed = subprocess.run(
        [sys.executable, "-m", "bridge", *argv],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )
    run = CliRun(completed.returncode, completed.stdout, completed.stderr)
    if echo is not None:
        for line in (run.out + run.err).splitlines():
            print(f"        | {line}", file=echo)
    return run


# -- the demo ------------------------------------------------------------------------------------


class Demo:
    def __init__(self, options: DemoOptions, out: TextIO) -> None:
        self.options = options
        self.root = repository_root()
        self.result = DemoResult()
        self.timeline = _Timeline(out, self.result)
        self.out = out
        self.trigger_log: list[str] = []

    # The sandbox's processes are threads of this one: everything stops when run() returns,
    # also on Ctrl-C (KeyboardInterrupt unwinds the ExitStack).
    def run(self) -> DemoResult:
        from bridge.sandbox.ado_server import AzureDevOpsServer
        from bridge.sandbox.aws import aws_emulator
        from bridge.sandbox.azure_devops import AzureDevOpsStandIn

        self.timeline.say("smbridge demo: the whole loop on this machine (no cloud account)")
        with contextlib.ExitStack() as stack:
            work = self.options.work_dir or Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="smbridge-demo-"))
            )
            work.mkdir(parents=True, exist_ok=True)
            self.work = work.resolve()
            try:
                trained = self._train()
                with self.timeline.step("start the sandbox") as note:
                    from bridge.sandbox.model_server import ModelServer

                    self.models = stack.enter_context(ModelServer(trained["model_file"]))
                    self.aws = stack.enter_context(aws_emulator(runtime_url=self.models.url))
                    stand_in = AzureDevOpsStandIn.for_pipeline_yaml(
                        self.root / "azure-pipelines" / "model-deploy.yml",
                        pat=TRIGGER_PAT,
                        pipelines=frozenset({DEPLOY_PIPELINE_ID}),
                        pipeline_names={DEPLOY_PIPELINE_ID: "model-deploy"},
                    )
                    self.ado = stack.enter_context(AzureDevOpsServer(stand_in))
                    self.stand_in = stand_in
                    stack.enter_context(contextlib.chdir(self.work))
                    note.append(
                        f"AWS {self.aws.url}, Azure DevOps {self.ado.base_url}, "
                        f"endpoints {self.models.url}"
                    )
                self._set_up()
                self._model_build(trained)
                if self.result.model_package_arn is None:
                    self.result.outcome = "below the AUC threshold: nothing registered"
                    self.result.ok = True
                else:
                    self._approve_and_trigger()
                    self._model_deploy()
            except StepFailed as exc:
                self.result.outcome = self.result.outcome or str(exc)
                self.result.ok = False
            if hasattr(self, "stand_in"):
                self._inventory()
            self._summary()
        return self.result

    # -- model build ------------------------------------------------------------------------------

    def _train(self) -> dict[str, Any]:
        with self.timeline.step("train and evaluate the model locally") as note:
            run_local = self.root / "model-build" / "run_local.py"
            local = self.work / "local-run"
            completed = subprocess.run(
                [sys.executable, str(run_local), "--work-dir", str(local),
                 "--auc-threshold", str(self.options.auc_threshold)],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            report_file = local / "evaluation" / "evaluation.json"
            if completed.returncode not in (0, 1) or not report_file.is_file():
                tail = (completed.stderr or completed.stdout).strip().splitlines()[-1:]
                raise StepFailed(f"model-build/run_local.py failed: {' '.join(tail)}")
            report = json.loads(report_file.read_text())
            auc = float(report["binary_classification_metrics"]["auc"]["value"])
            self.result.auc = auc
            verdict = "passes" if auc >= self.options.auc_threshold else "is below"
            note.append(
                f"AUC {auc:.4f} on the held-out split {verdict} {self.options.auc_threshold}"
            )
        return {
            "auc": auc,
            "report": report_file,
            "model_file": local / "model" / "xgboost-model",
        }

    def _set_up(self) -> None:
        with self.timeline.step("set up the accounts and the Azure DevOps project") as note:
            self._write_workspace()
            s3 = self.aws.client("s3")
            s3.create_bucket(
                Bucket=self.bucket,
                CreateBucketConfiguration={"LocationConstraint": self.aws.region},
            )
            self.aws.client("sagemaker").create_model_package_group(
                ModelPackageGroupName=GROUP,
                ModelPackageGroupDescription="smbridge demo (sandbox)",
            )
            self._trigger_infrastructure()
            self.reviewer = self.stand_in.add_reviewer(
                self.options.reviewer, REVIEWER_PAT, identity_id=self.reviewer_id
            )
            setup = self._cli("ado", "setup", env={"SMBRIDGE_ADO_PAT": TRIGGER_PAT})
            note.append(f"bucket {self.bucket}, group {GROUP}, trigger rule and queue; {setup}")

    def _model_build(self, trained: dict[str, Any]) -> None:
        with self.timeline.step("smbridge pipeline upsert") as note:
            run = self._run("pipeline", "upsert", "-o", "json")
            upserted = json.loads(run.out)
            note.append(f"{upserted['action']} {upserted['pipeline_name']}")
        with self.timeline.step("smbridge pipeline start --wait") as note:
            threshold = str(self.options.auc_threshold)
            run = self._run("pipeline", "start", "--wait", "--param", f"AucThreshold={threshold}",
                            "-o", "json")  # fmt: skip
            execution = json.loads(run.out)
            note.append(f"{execution['status']} (moto runs no step: see the steps above)")
        if trained["auc"] < self.options.auc_threshold:
            with self.timeline.step("the AUC condition") as note:
                note.append("below the threshold: the pipeline's Fail step, nothing registered")
            return
        with self.timeline.step("register the version with its metrics") as note:
            self.result.model_package_arn = self._register(trained)
            note.append(f"{self.result.model_package_arn} (PendingManualApproval)")

    def _register(self, trained: dict[str, Any]) -> str:
        """What the pipeline's RegisterModel step does: the model and its evaluation report in
        S3, a version of the group pending approval with the report as its model metrics."""
        s3 = self.aws.client("s3")
        archive = self.work / "model.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(trained["model_file"], arcname="xgboost-model")
        prefix = f"{GROUP}/demo-{uuid.uuid4().hex[:8]}"
        s3.upload_file(str(archive), self.bucket, f"{prefix}/model.tar.gz")
        s3.upload_file(str(trained["report"]), self.bucket, f"{prefix}/evaluation.json")
        return self.aws.client("sagemaker").create_model_package(
            ModelPackageGroupName=GROUP,
            ModelPackageDescription="smbridge demo: breast-cancer classifier",
            ModelApprovalStatus="PendingManualApproval",
            InferenceSpecification={
                "Containers": [{
                    "Image": XGBOOST_IMAGE,
                    "ModelDataUrl": f"s3://{self.bucket}/{prefix}/model.tar.gz",
                }],
                "SupportedContentTypes": ["text/csv"],
                "SupportedResponseMIMETypes": ["text/csv"],
            },
            ModelMetrics={"ModelQuality": {"Statistics": {
                "ContentType": "application/json",
                "S3Uri": f"s3://{self.bucket}/{prefix}/evaluation.json",
            }}},
        )["ModelPackageArn"]  # fmt: skip

    # -- approval → trigger ----------------------------------------------------------------------

    def _approve_and_trigger(self) -> None:
        arn = self.result.model_package_arn
        assert arn is not None
        with self.timeline.step(f"smbridge registry approve (as {self.options.reviewer})") as note:
            self._decide_in_registry("approve", "AUC checked on the held-out split")
            note.append("Approved")
        with self.timeline.step("SageMaker's event → rule → queue → trigger") as note:
            self._deliver(copies=2 if self.options.duplicate_event else 1)
            runs = list(self.stand_in.runs)
            if not runs:
                raise StepFailed("the trigger started no model-deploy run")
            copies = " (the event delivered twice)" if self.options.duplicate_event else ""
            for line in self.trigger_log:
                self.timeline.say(f"        trigger log: {line}")
            note.append(f"{len(runs)} model-deploy run(s) started{copies}: run {runs[-1]['id']}")
        if self.options.reapprove:
            with self.timeline.step("rejected, then approved again") as note:
                self._decide_in_registry("reject", "second thoughts: checking drift")
                self._deliver(copies=1)
                self._decide_in_registry("approve", "drift checked: fine")
                self._deliver(copies=1)
                note.append(f"{len(self.stand_in.runs)} runs in all: one per approval")
        self.result.runs = list(self.stand_in.runs)

    def _decide_in_registry(self, verb: str, comment: str) -> None:
        arn = self.result.model_package_arn
        assert arn is not None
        self._run("registry", verb, arn, "--comment", comment, "--approver", self.options.reviewer)

    def _deliver(self, *, copies: int) -> None:
        """SageMaker's state-change event for the package as it is now, on the default bus:
        matched by the rule's pattern, queued, polled into the trigger."""
        from bridge.sandbox.event_source import EventSourceMapping
        from bridge.trigger.handler import build_runtime, process
        from bridge.trigger.local import LocalContext
        from bridge.trigger.settings import TriggerSettings

        arn = self.result.model_package_arn
        sagemaker = self.aws.client("sagemaker")
        detail = sagemaker.describe_model_package(ModelPackageName=arn)
        detail.pop("ResponseMetadata", None)
        event = {
            "Source": "aws.sagemaker",
            "DetailType": "SageMaker Model Package State Change",
            "Resources": [arn],
            "Detail": json.dumps(detail, default=_iso),
        }
        events = self.aws.client("events")
        for _ in range(copies):
            answer = events.put_events(Entries=[event])
            if answer.get("FailedEntryCount"):
                raise StepFailed(f"PutEvents refused the event: {answer['Entries']}")
        settings = TriggerSettings.from_environ(self.trigger_environ)
        runtime = build_runtime(settings)
        mapping = EventSourceMapping(
            self.aws.client("sqs"),
            self.queue_url,
            lambda batch: process(batch, LocalContext(), runtime),
        )
        with _trigger_log() as log:
            mapping.drain(max_polls=20)
        self.trigger_log.extend(log)
        if mapping.errors:
            raise StepFailed(f"the trigger failed: {mapping.errors[-1]}")

    # -- model deploy ------------------------------------------------------------------------------

    def _model_deploy(self) -> None:
        run = self.result.runs[-1]
        parameters = run.get("templateParameters", {})
        arn = parameters["modelPackageArn"]
        agent = self._agent_environ(run)
        with self.timeline.step("Prepare: smbridge prepare") as note:
            prepared = self._run("prepare", "--model-package-arn", arn, "--out", "deploy-params",
                                 env=agent)  # fmt: skip
            note.append(f"{prepared.outputs.get('modelPackageArn', arn)} is Approved")
        staging = self._deploy("staging", arn, agent)
        with self.timeline.step("TestStaging: smbridge endpoint test") as note:
            tested = self._endpoint_test("staging", staging, agent, allow_failure=True)
            if tested.code != 0:
                self.result.outcome = "the staging endpoint test failed: production untouched"
                note.append(tested.last_error())
                raise StepFailed(self.result.outcome, tested.code)
            note.append("passed (status, shape, range, accuracy, latency)")
        with self.timeline.step("the production gate") as note:
            approval = self.stand_in.request_approval(f"{GROUP}-production", int(run["id"]))
            self.result.production_approval = approval["id"]
            pending = self._run("ado", "approvals", "list", "-o", "json",
                                env={"SMBRIDGE_ADO_PAT": TRIGGER_PAT})  # fmt: skip
            listed = json.loads(pending.out)["approvals"]
            verb = "reject" if self.options.reject_production else "approve"
            self._run("ado", "approvals", verb, approval["id"], "--comment",
                      "staging tests reviewed", env={"SMBRIDGE_ADO_PAT": REVIEWER_PAT})  # fmt: skip
            decided = self.stand_in.approval(approval["id"])["status"]
            note.append(
                f"{len(listed)} pending; {decided} by {self.options.reviewer} "
                f"(approval {approval['id'][:8]}…)"
            )
        if self.options.reject_production:
            self.result.outcome = "production approval rejected: production untouched"
            self.result.ok = True
            return
        production = self._deploy("production", arn, agent)
        with self.timeline.step("DeployProd: smoke test") as note:
            self._endpoint_test("production", production, agent)
            note.append("passed")
        self.result.outcome = "deployed to production"
        self.result.ok = True

    def _deploy(self, stage: str, arn: str, agent: dict[str, str]) -> str:
        title = {"staging": "DeployStaging", "production": "DeployProd"}[stage]
        with self.timeline.step(f"{title}: smbridge deploy --stage {stage}") as note:
            deployed = self._run(
                "deploy", "--stage", stage, "--model-package-arn", arn,
                "--stage-config", f"model-deploy/config/{stage}.json",
                "--templates-dir", "templates", "--web-identity", env=agent,
            )  # fmt: skip
            endpoint = deployed.outputs["endpointName"]
            self.result.endpoints[stage] = endpoint
            transform = _inverted if stage == "staging" and self.options.break_staging else None
            self.models.serve(endpoint, transform=transform)
            note.append(f"stack {deployed.outputs.get('stackName')} in {STAGE_ACCOUNTS[stage]}, "
                        f"endpoint {endpoint}")  # fmt: skip
            return endpoint

    def _endpoint_test(
        self, stage: str, endpoint: str, agent: dict[str, str], *, allow_failure: bool = False
    ) -> CliRun:
        argv = ["endpoint", "test", "--endpoint", endpoint,
                "--stage-config", f"model-deploy/config/{stage}.json", "--web-identity",
                "--junit", f"test-results/endpoint-{stage}.xml"]  # fmt: skip
        return self._run(*argv, env=agent, allow_failure=allow_failure)

    # -- plumbing --------------------------------------------------------------------------------

    @property
    def bucket(self) -> str:
        return f"smbridge-artifacts-123456789012-{self.aws.region}"

    reviewer_id = "5a1e0c3d-7b2f-4e8a-9c6d-1f0b2a3c4d5e"

    def _write_workspace(self) -> None:
        """A checkout of the user's repository as model-build and model-deploy see it, with the
        sandbox's accounts: bridge.yaml, the stage configs, moto-compatible templates, the
        endpoint test's payload."""
        import shutil

        import yaml

        from bridge.sandbox.cfn import load_template
        from bridge.sandbox.moto_fixes import moto_compatible

        config = yaml.safe_load((self.root / "bridge.yaml").read_text())
        config["model_registry"] = {"account_id": "123456789012"}
        config["aws"]["role_arn"] = "arn:aws:iam::123456789012:role/smbridge-ci"
        pipeline = config["pipeline"]
        pipeline["definition"] = f"{self.root / 'model-build' / 'pipeline.py'}:get_pipeline"
        pipeline["execution_role_arn"] = (
            "arn:aws:iam::123456789012:role/smbridge-sagemaker-execution"
        )
        pipeline["artifact_bucket"] = self.bucket
        environments = config["azure_devops"]["environments"]
        environments["pipeline_id"] = DEPLOY_PIPELINE_ID
        environments["production_approval"]["approvers"] = [
            {"id": self.reviewer_id, "display_name": self.options.reviewer}
        ]
        config["azure_devops"]["organization"] = self.ado.organization_url(ORGANIZATION)
        (self.work / "bridge.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        deploy = self.work / "model-deploy"
        shutil.copytree(self.root / "model-deploy" / "config", deploy / "config",
                        dirs_exist_ok=True)  # fmt: skip
        shutil.copytree(self.root / "model-deploy" / "tests", deploy / "tests",
                        dirs_exist_ok=True)  # fmt: skip
        templates = self.work / "templates"
        templates.mkdir(exist_ok=True)
        for source in sorted((self.root / "model-deploy" / "templates").glob("*.yaml")):
            if source.name == "realtime.yaml":
                template, _ = moto_compatible(load_template(source))
                (templates / source.name).write_text(json.dumps(template))
            else:
                shutil.copy(source, templates / source.name)

    def _trigger_infrastructure(self) -> None:
        """The trigger's rule, queue, dead-letter queue, idempotency table and secret, from
        infra/trigger.yaml (Lambda mode) as CloudFormation would render them."""
        from bridge.sandbox.cfn import Renderer, load_template

        template = load_template(self.root / "infra" / "trigger.yaml")
        secret_arn = self.aws.client("secretsmanager").create_secret(
            Name="smbridge/azure-devops", SecretString=json.dumps({"pat": TRIGGER_PAT})
        )["ARN"]
        rendered = Renderer(
            template,
            {
                "AzureDevOpsSecretArn": secret_arn,
                "CodeS3Bucket": self.bucket,
                "CodeS3Key": "trigger.zip",
                "RoutesJson": "{}",
                "ModelPackageGroupNames": GROUP,
            },
            region=self.aws.region,
        )
        sqs = self.aws.client("sqs")
        queue_props = rendered.properties("TriggerQueue")
        dlq = sqs.create_queue(QueueName="smbridge-trigger-dlq")["QueueUrl"]
        redrive = queue_props["RedrivePolicy"]
        queue = sqs.create_queue(
            QueueName="smbridge-trigger",
            Attributes={
                "VisibilityTimeout": str(queue_props["VisibilityTimeout"]),
                "RedrivePolicy": json.dumps({
                    "deadLetterTargetArn": _queue_arn(sqs, dlq),
                    "maxReceiveCount": int(redrive["maxReceiveCount"]),
                }),
            },
        )["QueueUrl"]  # fmt: skip
        rule = rendered.properties("ApprovalRule")
        events = self.aws.client("events")
        events.put_rule(Name="smbridge-approvals", EventPattern=json.dumps(rule["EventPattern"]))
        (target,) = rule["Targets"]
        events.put_targets(
            Rule="smbridge-approvals", Targets=[{"Id": target["Id"], "Arn": _queue_arn(sqs, queue)}]
        )
        self.aws.client("dynamodb").create_table(
            TableName="smbridge-trigger-idempotency",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        self.queue_url = queue
        routes = {
            "routes": {
                GROUP: {
                    "organization": self.ado.organization_url(ORGANIZATION),
                    "project": PROJECT,
                    "pipelineId": DEPLOY_PIPELINE_ID,
                }
            }
        }
        self.trigger_environ = {
            "SMBRIDGE_ROUTES": json.dumps(routes),
            "SMBRIDGE_ADO_SECRET_ARN": secret_arn,
            "SMBRIDGE_IDEMPOTENCY_TABLE": "smbridge-trigger-idempotency",
            "SMBRIDGE_REGISTRY_ACCOUNTS": "123456789012",
        }

    def _agent_environ(self, run: dict[str, Any]) -> dict[str, str]:
        """A model-deploy job's variables, as the agent sets them for the run."""
        plan = uuid.uuid5(uuid.NAMESPACE_URL, f"plan/{run['id']}")
        job = uuid.uuid5(uuid.NAMESPACE_URL, f"job/{run['id']}")
        self.stand_in.accepted_auth.add(f"Bearer {JOB_ACCESS_TOKEN}")
        self.stand_in.project_names[PROJECT_ID] = PROJECT
        for stage in STAGE_ACCOUNTS:
            connection = json.loads(
                (self.work / "model-deploy/config" / f"{stage}.json").read_text()
            )
            if connection.get("service_connection_id"):
                self.stand_in.service_connections[connection["service_connection_id"].lower()] = (
                    f"smbridge-aws-{stage}"
                )
        base = self.ado.organization_url(ORGANIZATION)
        return {
            "TF_BUILD": "True",
            "BUILD_BUILDID": str(run["id"]),
            "SYSTEM_JOBATTEMPT": "1",
            "SYSTEM_ACCESSTOKEN": JOB_ACCESS_TOKEN,
            "SYSTEM_OIDCREQUESTURI": (
                f"{base}/{PROJECT_ID}/_apis/distributedtask/hubs/build/plans/{plan}/jobs/{job}/"
                "oidctoken"
            ),
        }

    def _inventory(self) -> None:
        """What the sandbox holds at the end, read from it (not from the demo's own notes): the
        stacks in each stage account, the model-deploy runs, the stand-in's contract
        violations (any is a failure: the bridge sent a request the specs do not allow)."""
        sts = self.aws.client("sts")
        for stage, account in STAGE_ACCOUNTS.items():
            credentials = sts.assume_role(
                RoleArn=f"arn:aws:iam::{account}:role/smbridge-deploy",
                RoleSessionName="smbridge-demo-inventory",
            )["Credentials"]
            cloudformation = self.aws.client(
                "cloudformation",
                aws_access_key_id=credentials["AccessKeyId"],
                aws_secret_access_key=credentials["SecretAccessKey"],
                aws_session_token=credentials["SessionToken"],
            )
            summaries = cloudformation.list_stacks()["StackSummaries"]
            self.result.stacks[stage] = sorted(
                s["StackName"] for s in summaries if s["StackStatus"] != "DELETE_COMPLETE"
            )
        self.result.runs = list(self.stand_in.runs)
        self.result.violations = [v.message for v in self.stand_in.violations]
        if self.result.violations:
            self.result.ok = False
            self.result.outcome = (
                f"the Azure DevOps stand-in recorded {len(self.result.violations)} request(s) "
                f"the OpenAPI specs do not allow: {self.result.violations[0]}"
            )

    def _cli(self, *argv: str, env: dict[str, str] | None = None) -> str:
        run = self._run(*argv, env=env)
        lines = [line for line in run.out.splitlines() if line.strip()]
        return lines[-1].strip() if lines else "done"

    def _run(
        self, *argv: str, env: dict[str, str] | None = None, allow_failure: bool = False
    ) -> CliRun:
        run = cli(*argv, env=env, echo=self.out if self.options.verbose else None)
        if run.code != 0 and not allow_failure:
            raise StepFailed(
                f"smbridge {' '.join(argv[:2])} exited {run.code}: {run.last_error()}", run.code
            )
        return run

    def _summary(self) -> None:
        say = self.timeline.say
        total = time.monotonic() - self.timeline.started
        say("")
        say(f"{'ok' if self.result.ok else 'FAILED'}: {self.result.outcome} ({total:.1f}s)")
        say("what was emulated:")
        for line in EMULATED:
            say(f"  - {line}")
        say("next: docs/setup.md sets this up in your own AWS accounts and Azure DevOps "
            "organization; `smbridge doctor` checks each step")  # fmt: skip


@contextlib.contextmanager
def _trigger_log() -> Iterator[list[str]]:
    """The trigger's structured log (CloudWatch's, in Lambda), captured: each entry's message."""
    import logging

    handlers = [
        h
        for h in logging.getLogger("smbridge-trigger").handlers
        if isinstance(h, logging.StreamHandler)
    ]
    buffer = io.StringIO()
    previous = [h.setStream(buffer) for h in handlers]
    messages: list[str] = []
    try:
        yield messages
    finally:
        for handler, stream in zip(handlers, previous, strict=True):
            if stream is not None:
                handler.setStream(stream)
        for line in buffer.getvalue().splitlines():
            try:
                messages.append(str(json.loads(line).get("message", line)))
            except ValueError:
                messages.append(line)


def _inverted(scores: list[float]) -> list[float]:
    return [1.0 - score for score in scores]


def _iso(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _queue_arn(sqs: Any, url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return attributes["Attributes"]["QueueArn"]


def run_demo(options: DemoOptions | None = None, *, out: TextIO | None = None) -> DemoResult:
    """Run the loop; the result says what happened (``ok`` False on any failure)."""
    return Demo(options or DemoOptions(), out or sys.stdout).run()
