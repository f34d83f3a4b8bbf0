"""``smbridge deploy`` when the stack fails, and when the deploy itself is cut short.

CloudFormation goes on with an operation whoever started it is gone: a deploy cancelled by the
agent (SIGINT) leaves its update, rollback, deletion or change set behind, and the next run has
to recover from whatever state that leaves the stack in. Each case runs the command twice
(``bridge.cli.main``, as the agent's step does: exit codes and the JSON document) and checks the
second run succeeds and which calls it made.

The stage's CloudFormation is tests/support/fake_cloudformation.py (moto never rolls back and
has no ContinueUpdateRollback): a real botocore client (requests validated against botocore's
model), answered by a fake that refuses what the service refuses (CreateChangeSet on a stack in
progress, in ROLLBACK_COMPLETE or UPDATE_ROLLBACK_FAILED; OnStackFailure=DELETE only with
CREATE) and moves a stack one step per DescribeStacks. The registry side (the package must be
Approved) is moto. States and what recovers them: CloudFormation user guide, "Stack status
codes" and "Continue rolling back an update"; API reference, ContinueUpdateRollback,
DeleteStack, CreateChangeSet (``OnStackFailure``, ``ChangeSetType`` CREATE for a stack in
REVIEW_IN_PROGRESS).
"""

from __future__ import annotations

import functools
import json
import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from bridge.cli.app import main
from bridge.deploy import operations
from tests.support.fake_cloudformation import FakeCloudFormation
from tests.support.fakes import StaticClients
from tests.support.registry import add_model_package

REPO_ROOT = Path(__file__).resolve().parents[2]
STAGING = REPO_ROOT / "model-deploy" / "config" / "staging.json"
TEMPLATES = REPO_ROOT / "model-deploy" / "templates"
GROUP = "smbridge-demo"
STACK = "smbridge-demo-staging"
# staging.json's default CloudFormation service role (the deploy role's ARN + "-cloudformation")
CFN_ROLE = "arn:aws:iam::222222222222:role/smbridge-deploy-cloudformation"
READS = frozenset({"DescribeStacks", "DescribeStackEvents", "DescribeChangeSet"})


@dataclass(frozen=True)
class Run:
    code: int
    document: dict[str, Any]
    stderr: str
    calls: list[tuple[str, dict[str, Any]]]

    def writes(self) -> list[str]:
        """The operations that change something, in order (reads left out)."""
        return [name for name, _ in self.calls if name not in READS]

    def of(self, operation: str) -> list[dict[str, Any]]:
        return [params for name, params in self.calls if name == operation]


@dataclass
class Stage:
    fake: FakeCloudFormation
    versions: list[str]
    monkeypatch: pytest.MonkeyPatch
    capsys: Any
    builds: int = 100

    def approve(self) -> str:
        """A new Approved version in the registry (moto); its ARN."""
        sagemaker = boto3.client("sagemaker", region_name="eu-west-1")
        self.versions.append(add_model_package(sagemaker, GROUP, "Approved"))
        return self.versions[-1]

    def deploy(self, arn: str) -> Run:
        """One ``smbridge deploy --stage staging`` by a new Azure DevOps run (its build id is
        in the operations' ClientRequestToken: ``azdo-<build>-1-…``)."""
        self.builds += 1
        for name, value in {
            "TF_BUILD": "True",
            "BUILD_BUILDID": str(self.builds),
            "SYSTEM_JOBATTEMPT": "1",
            "BUILD_DEFINITIONNAME": "model-deploy",
        }.items():
            self.monkeypatch.setenv(name, value)
        start = len(self.fake.calls)
        self.capsys.readouterr()
        try:
            code = main(
                ["deploy", "--stage", "staging", "--model-package-arn", arn,
                 "--stage-config", str(STAGING), "--templates-dir", str(TEMPLATES),
                 "--region", "eu-west-1", "--output", "json"]
            )  # fmt: skip
        except KeyboardInterrupt:  # (not pytest.raises: pytest ends the session on this one)
            pytest.fail("KeyboardInterrupt escaped smbridge deploy")
        out, err = self.capsys.readouterr()
        return Run(code, json.loads(out), err, self.fake.calls[start:])

    def interrupt(
        self,
        operation: str,
        when: Callable[[dict[str, Any]], bool],
        signum: signal.Signals = signal.SIGINT,
    ) -> None:
        """SIGINT (the agent's cancel) to this process right after the fake has answered the
        first ``operation`` whose answer satisfies ``when``: the answer never reaches the
        command, and what CloudFormation started goes on."""
        attribute = "_" + "".join("_" + c.lower() if c.isupper() else c for c in operation)[1:]
        original = getattr(self.fake, attribute)
        fired: list[bool] = []

        def answer(**params: Any) -> dict[str, Any]:
            body = original(**params)
            if not fired and when(body):
                fired.append(True)
                # SIGTERM's default action would end pytest itself, not just the command
                assert signal.getsignal(signum) is not signal.SIG_DFL, f"no {signum.name} handler"
                os.kill(os.getpid(), signum)
            return body

        setattr(self.fake, attribute, answer)
        self._restore = lambda: setattr(self.fake, attribute, original)

    def no_more_interrupts(self) -> None:
        self._restore()


@pytest.fixture
def stage(tmp_path, monkeypatch, capsys) -> Iterator[Stage]:
    """``smbridge deploy`` whose stage account is the fake CloudFormation (the registry check
    goes to moto), run from a directory without bridge.yaml."""
    monkeypatch.chdir(tmp_path)
    fake = FakeCloudFormation(assumable_roles={CFN_ROLE})
    cfn = fake.attach(boto3.client("cloudformation", region_name="eu-west-1"))
    monkeypatch.setattr(
        operations,
        "deploy_stage",
        functools.partial(
            operations.deploy_stage,
            stage_clients_factory=lambda config, base: StaticClients(cloudformation=cfn),
            sleep=lambda seconds: None,
        ),
    )
    with mock_aws():
        yield Stage(fake, [], monkeypatch, capsys)


def status_is(*statuses: str) -> Callable[[dict[str, Any]], bool]:
    return lambda body: body["Stacks"][0]["StackStatus"] in statuses


def succeeded(run: Run, action: str) -> None:
    assert run.code == 0, run.document.get("error", run.stderr)
    assert run.document["action"] == action


def a_created_stack(stage: Stage) -> str:
    first = stage.deploy(stage.approve())
    succeeded(first, "created")
    return first.document["stack_name"]


# -- a failed stack: exit 3 with CloudFormation's reason -------------------------------------


def test_a_failed_update_exits_3_with_the_resources_reason(stage):
    """The update fails and rolls back (UPDATE_ROLLBACK_COMPLETE): the error names the
    resource and its ResourceStatusReason, not just the stack's status."""
    a_created_stack(stage)
    stage.fake.outcomes = ["fail"]
    failed = stage.deploy(stage.approve())
    assert failed.code == 3
    error = failed.document["error"]
    assert error.startswith(f"stack {STACK} ended UPDATE_ROLLBACK_COMPLETE: ")
    (failure,) = [
        e for e in stage.fake.stack(STACK).events if e["ResourceStatus"] == "UPDATE_FAILED"
    ]
    assert f"{failure['LogicalResourceId']}: {failure['ResourceStatusReason']}" in error
    assert failed.document["exit_code"] == 3
    assert error in failed.stderr


def test_a_failed_first_creation_exits_3_with_the_reason_and_the_next_run_creates(stage):
    """OnStackFailure=DELETE: CloudFormation deletes the failed stack; its events, read by
    stack id, still give the reason; the next run creates the stack afresh."""
    stage.fake.outcomes = ["fail"]
    failed = stage.deploy(stage.approve())
    assert failed.code == 3
    (gone,) = stage.fake.stacks.values()
    (failure,) = [e for e in gone.events if e["ResourceStatus"] == "CREATE_FAILED"]
    assert failure["ResourceStatusReason"] in failed.document["error"]
    assert "CloudFormation deleted it" in failed.document["error"]
    again = stage.deploy(stage.versions[-1])
    succeeded(again, "created")
    assert again.writes() == ["CreateChangeSet", "ExecuteChangeSet"]
    assert again.of("CreateChangeSet")[0]["ChangeSetType"] == "CREATE"


# -- a deploy cut short: the next run recovers -------------------------------------------------


def cancelled(run: Run, by: str = "SIGINT") -> None:
    """Exit 130, saying the stack operation goes on and the next deploy takes it from there."""
    assert run.code == 130, run.stderr
    assert run.document == {
        "status": "error",
        "error": f"cancelled by {by} during the deploy of stack {STACK}: what CloudFormation "
        "had started on it goes on (an update may still complete, or roll back); the next "
        "deploy waits for it to end, then carries on from the state it left",
        "exit_code": 130,
    }


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_cancelled_during_the_update_the_next_run_waits_for_it(stage, signum):
    """SIGINT (or SIGTERM alone) while CloudFormation updates the stack: the update goes on
    without the command. The next run of the same version finds the stack UPDATE_IN_PROGRESS,
    waits for it to end (a change set on a stack in progress is refused), then has nothing
    left to change."""
    a_created_stack(stage)
    stage.interrupt("DescribeStacks", status_is("UPDATE_IN_PROGRESS"), signum)
    v2 = stage.approve()
    cancelled(stage.deploy(v2), by=signum.name)
    assert stage.fake.stack(STACK).status == "UPDATE_IN_PROGRESS"
    stage.no_more_interrupts()
    again = stage.deploy(v2)
    succeeded(again, "unchanged")
    assert again.writes() == ["CreateChangeSet", "DeleteChangeSet"]  # the empty change set
    assert f"stack {STACK} is UPDATE_IN_PROGRESS" in again.stderr
    assert stage.fake.stack(STACK).status == "UPDATE_COMPLETE"


def test_cancelled_update_that_then_fails_to_roll_back_is_continued_and_redone(stage):
    """The cancelled update fails and so does its rollback (UPDATE_ROLLBACK_FAILED, which
    cannot be updated): the next run waits, ContinueUpdateRollback, then updates."""
    a_created_stack(stage)
    stage.fake.outcomes = ["fail-rollback-fails", "success", "success"]
    stage.interrupt("DescribeStacks", status_is("UPDATE_IN_PROGRESS"))
    v2 = stage.approve()
    cancelled(stage.deploy(v2))
    stage.no_more_interrupts()
    again = stage.deploy(v2)
    succeeded(again, "updated")
    assert again.writes() == ["ContinueUpdateRollback", "CreateChangeSet", "ExecuteChangeSet"]
    (cont,) = again.of("ContinueUpdateRollback")
    assert cont["RoleARN"] == CFN_ROLE
    assert cont["ClientRequestToken"].startswith(f"azdo-{stage.builds}-1-rollback-")
    assert again.of("CreateChangeSet")[0]["ChangeSetType"] == "UPDATE"
    assert stage.fake.stack(STACK).status == "UPDATE_COMPLETE"


def test_cancelled_first_creation_that_then_fails_is_created_again(stage):
    """SIGINT during the first creation, which then fails: CloudFormation deletes the stack
    (OnStackFailure=DELETE). The next run waits for the deletion and creates it afresh."""
    stage.fake.outcomes = ["fail", "success"]
    stage.interrupt("DescribeStacks", status_is("CREATE_IN_PROGRESS"))
    v1 = stage.approve()
    cancelled(stage.deploy(v1))
    stage.no_more_interrupts()
    again = stage.deploy(v1)
    succeeded(again, "created")
    assert again.writes() == ["CreateChangeSet", "ExecuteChangeSet"]
    assert again.of("CreateChangeSet")[0]["OnStackFailure"] == "DELETE"
    assert stage.fake.stack(STACK).status == "CREATE_COMPLETE"


def test_cancelled_before_the_change_set_ran_leaves_review_in_progress(stage):
    """SIGINT while the first change set is being created: the stack exists, in
    REVIEW_IN_PROGRESS, with a change set nobody will execute. The next run creates its own
    CREATE change set on it (ExecuteChangeSet deletes the stack's other change sets)."""
    stage.interrupt("DescribeChangeSet", lambda body: body["Status"] == "CREATE_COMPLETE")
    v1 = stage.approve()
    cancelled(stage.deploy(v1))
    assert stage.fake.stack(STACK).status == "REVIEW_IN_PROGRESS"
    (stale,) = stage.fake.change_sets.values()
    stage.no_more_interrupts()
    again = stage.deploy(v1)
    succeeded(again, "created")
    assert again.writes() == ["CreateChangeSet", "ExecuteChangeSet"]
    assert again.of("CreateChangeSet")[0]["ChangeSetType"] == "CREATE"
    assert stale.change_set_id not in stage.fake.change_sets
    assert stage.fake.stack(STACK).status == "CREATE_COMPLETE"


def test_cancelled_while_deleting_a_failed_first_creation_is_created_next_time(stage):
    """A stack left ROLLBACK_COMPLETE (a first creation that failed before OnStackFailure was
    used) is deleted and created again; SIGINT during the deletion: the next run waits for the
    deletion to end and creates the stack, without deleting again."""
    stage.fake.put_stack(STACK, "ROLLBACK_COMPLETE")
    stage.interrupt("DeleteStack", lambda _: True)  # accepted; the answer is lost
    v1 = stage.approve()
    first = stage.deploy(v1)
    cancelled(first)
    assert first.writes() == ["DeleteStack"]
    assert stage.fake.stacks[first.of("DeleteStack")[0]["StackName"]].status == (
        "DELETE_IN_PROGRESS"
    )
    stage.no_more_interrupts()
    again = stage.deploy(v1)
    succeeded(again, "created")
    assert again.writes() == ["CreateChangeSet", "ExecuteChangeSet"]
    assert stage.fake.stack(STACK).status == "CREATE_COMPLETE"


def test_cancelled_while_continuing_a_rollback_is_updated_next_time(stage):
    """A stack left UPDATE_ROLLBACK_FAILED; SIGINT while ContinueUpdateRollback runs: the next
    run waits for the rollback to end (UPDATE_ROLLBACK_COMPLETE) and updates."""
    stage.fake.put_stack(STACK, "UPDATE_ROLLBACK_FAILED", template="{}")
    stage.interrupt("ContinueUpdateRollback", lambda _: True)  # accepted; the answer is lost
    v1 = stage.approve()
    first = stage.deploy(v1)
    cancelled(first)
    assert first.writes() == ["ContinueUpdateRollback"]
    assert stage.fake.stack(STACK).status == "UPDATE_ROLLBACK_IN_PROGRESS"
    stage.no_more_interrupts()
    again = stage.deploy(v1)
    succeeded(again, "updated")
    assert again.writes() == ["CreateChangeSet", "ExecuteChangeSet"]
    assert stage.fake.stack(STACK).status == "UPDATE_COMPLETE"
