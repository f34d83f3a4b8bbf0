"""``smbridge ado approvals list|approve|reject`` and the SDK functions behind them."""

from __future__ import annotations

import json
from typing import Any

import pytest
import responses

from bridge.ado import setup as ado_setup
from bridge.ado.setup import ApprovalDecisionParams, ApprovalNotPending, ApprovalsListParams
from bridge.azure_devops.client import AzureDevOpsClient, AzureDevOpsError
from bridge.azure_devops.credentials import PatCredential
from bridge.core.output import Reporter
from tests.support.fake_ado import FakeAzureDevOps, Fault
from tests.unit.test_ado_setup import PAT, TOKEN, methods, smbridge  # noqa: F401 (fixture)

ANN = "3b3db741-9d03-4e32-a7c0-6c3dfc2013c1"
BOB = "0f4a1a2c-5e6d-4c3b-9a8f-7e6d5c4b3a21"
UNKNOWN = "11111111-2222-3333-4444-555555555555"


@pytest.fixture
def fake():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield FakeAzureDevOps(pat=PAT, accepted_auth={f"Bearer {TOKEN}"}).install(mock)


@pytest.fixture
def client() -> AzureDevOpsClient:
    return AzureDevOpsClient("contoso", PatCredential(PAT, source="test"), sleep=lambda _: None)


def decision(approval_id: str, comment: str = "Endpoint tests green", **extra: Any):
    return ApprovalDecisionParams(
        organization="contoso", project="mlops", approval_id=approval_id, comment=comment, **extra
    )


def sent_body(fake: FakeAzureDevOps) -> Any:
    return json.loads(fake.requests[-1][2])


def test_list_pending_approvals_with_their_approvers(fake, client, capsys):
    pending = fake.add_approval([ANN, BOB])
    fake.add_approval([ANN], status="approved")
    params = ApprovalsListParams(organization="contoso", project="mlops")

    result = ado_setup.list_approvals(params, client=client, reporter=Reporter())

    ((method, url, body, operation),) = fake.requests
    assert (method, operation, body) == ("GET", "Approvals_Query", None)
    assert "state=pending" in url and "%24expand=steps" in url and "api-version=7.1" in url
    (approval,) = result.approvals
    assert approval["id"] == pending
    assert approval["pipeline"] == "model-deploy"
    assert approval["run"] == "20261123.7"
    assert [s["approver_id"] for s in approval["steps"]] == [ANN, BOB]
    out = capsys.readouterr().out
    assert pending in out and "1 of User 1, User 2" in out


def test_list_says_so_when_nothing_is_pending(fake, client, capsys):
    params = ApprovalsListParams(organization="contoso", project="mlops")
    assert ado_setup.list_approvals(params, client=client, reporter=Reporter()).approvals == []
    assert capsys.readouterr().out == "no pending approvals in mlops\n"


def test_approve_sends_the_recorded_body_shape(fake, client, capsys):
    approval_id = fake.add_approval([ANN])
    result = ado_setup.approve(decision(approval_id), client=client, reporter=Reporter())
    assert fake.operations() == ["Approvals_Update"]
    assert fake.requests[-1][0] == "PATCH"
    assert sent_body(fake) == [
        {"approvalId": approval_id, "status": "approved", "comment": "Endpoint tests green"}
    ]
    assert result.status == "approved"
    assert fake.approvals[approval_id]["status"] == "approved"
    assert capsys.readouterr().out == f"approval {approval_id}: approved\n"


def test_reject_sends_rejected(fake, client):
    approval_id = fake.add_approval([ANN])
    result = ado_setup.reject(decision(approval_id, "AUC dropped"), client=client)
    assert sent_body(fake) == [
        {"approvalId": approval_id, "status": "rejected", "comment": "AUC dropped"}
    ]
    assert result.status == "rejected"


@pytest.mark.parametrize("status", [409, 400])
def test_an_already_completed_approval_is_one_clear_error(fake, client, status):
    fake.completed_approval_status = status
    approval_id = fake.add_approval([ANN], status="approved")
    with pytest.raises(ApprovalNotPending) as caught:
        ado_setup.reject(decision(approval_id), client=client)
    assert str(caught.value) == (
        f"approval {approval_id} is already approved: it cannot be rejected any more"
    )
    assert caught.value.exit_code == 2
    assert fake.operations() == ["Approvals_Update", "Approvals_Get"]


def test_a_400_on_a_pending_approval_keeps_the_service_message(fake, client):
    approval_id = fake.add_approval([ANN])
    fake.admin_faults.append(Fault("status", 400))
    with pytest.raises(
        AzureDevOpsError, match=r"Approvals - Update \(approve .*\) in mlops: HTTP 400: fault 400"
    ):
        ado_setup.approve(decision(approval_id), client=client)


def test_an_unknown_approval_names_the_operation(fake, client):
    with pytest.raises(AzureDevOpsError) as caught:
        ado_setup.approve(decision(UNKNOWN), client=client)
    assert str(caught.value) == (
        f"Approvals - Update (approve {UNKNOWN}) in mlops: HTTP 404: Approval {UNKNOWN} not "
        "found (check the organization, the project and the approval id)"
    )


def test_dry_runs_send_nothing(fake, capsys):
    approve = ado_setup.approve(decision(UNKNOWN, dry_run=True), client=None, reporter=Reporter())
    listing = ado_setup.list_approvals(
        ApprovalsListParams(organization="contoso", project="mlops", dry_run=True), client=None
    )
    assert fake.requests == []
    (planned,) = approve.planned_requests
    assert planned.method == "PATCH"
    assert (
        planned.url
        == "https://dev.azure.com/contoso/mlops/_apis/pipelines/approvals?api-version=7.1"
    )
    assert planned.body == [
        {"approvalId": UNKNOWN, "status": "approved", "comment": "Endpoint tests green"}
    ]
    assert listing.planned_requests[0].method == "GET"
    assert capsys.readouterr().out == ""  # the SDK is silent: the CLI renders the plan
    assert (
        approve.plan.header()
        == "dry run: Azure DevOps requests approvals approve would make (no call made)"
    )
    assert approve.plan.steps[0].operation == f"PATCH {planned.url}"


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"approval_id": "42"}, "valid UUID"),
        ({"comment": ""}, "at least 1 character"),
    ],
)
def test_decision_params_are_checked(fields, problem):
    values = {"organization": "o", "project": "p", "approval_id": ANN, "comment": "c", **fields}
    with pytest.raises(ValueError, match=problem):
        ApprovalDecisionParams(**values)


# -- CLI ----------------------------------------------------------------------------------------


def test_cli_list_json_and_approve(smbridge, fake, monkeypatch, capsys):  # noqa: F811
    monkeypatch.setenv("SMBRIDGE_ADO_PAT", PAT)
    approval_id = fake.add_approval([ANN])
    assert smbridge(["ado", "approvals", "list", "--output", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [a["id"] for a in document["approvals"]] == [approval_id]
    argv = ["ado", "approvals", "approve", approval_id, "--comment", "ok"]
    assert smbridge(argv) == 0
    captured = capsys.readouterr()
    assert captured.out == f"approval {approval_id}: approved\n"
    assert PAT not in captured.out + captured.err
    assert fake.approvals[approval_id]["status"] == "approved"


def test_cli_reject_a_completed_approval_is_one_line_exit_2(smbridge, fake, monkeypatch, capsys):  # noqa: F811
    monkeypatch.setenv("SYSTEM_ACCESSTOKEN", TOKEN)
    approval_id = fake.add_approval([ANN], status="rejected")
    argv = ["ado", "approvals", "reject", approval_id, "--comment", "no"]
    assert smbridge(argv) == 2
    captured = capsys.readouterr()
    assert captured.err == (
        f"error: approval {approval_id} is already rejected: it cannot be rejected any more\n"
    )
    assert TOKEN not in captured.out + captured.err
    assert fake.requests[0][0] == "PATCH"


def test_cli_approve_needs_a_comment(smbridge, capsys):  # noqa: F811
    with pytest.raises(SystemExit) as caught:
        smbridge(["ado", "approvals", "approve", ANN])
    assert caught.value.code == 2
    assert "--comment" in capsys.readouterr().err


def test_cli_organization_and_project_flags_override_bridge_yaml(smbridge, fake, monkeypatch):  # noqa: F811
    monkeypatch.setenv("AZURE_DEVOPS_EXT_PAT", PAT)
    argv = ["ado", "approvals", "list", "--organization", "fabrikam", "--project", "RM"]
    assert smbridge(argv) == 0
    assert fake.requests[0][1].startswith("https://dev.azure.com/fabrikam/RM/_apis/pipelines/")
    assert methods(fake) == ["GET"]
