"""The Azure DevOps stand-in over real HTTP (bridge/sandbox/ado_server.py): the bridge's own
client and SDK functions, pointed at ``http://127.0.0.1:PORT/contoso``, and raw ``requests``
for what the bridge never sends (a request that breaks the contract, a refused credential
without ``X-TFS-FedAuthRedirect``).

Sources of the service behaviour asserted here: reference/ado-openapi-*.json (operations,
response schemas), reference/ado-examples/approvals-*.json (approval shapes), reference/README.md
(400 for an undeclared template parameter, 429 + Retry-After), Microsoft docs "Rate limits"."""

from __future__ import annotations

import base64
import json
import socket
from typing import Any

import jsonschema
import pytest
import requests

from bridge.ado.setup import EnvironmentsSettings, SetupParams, setup_environments
from bridge.azure_devops import approvals
from bridge.azure_devops.client import AzureDevOpsClient, AzureDevOpsError
from bridge.azure_devops.credentials import PatCredential
from bridge.cli.app import main
from bridge.sandbox import ado_contract
from bridge.sandbox.ado_contract import REFERENCE_DIR, SandboxUnavailable
from bridge.sandbox.ado_server import AzureDevOpsServer
from bridge.sandbox.azure_devops import (
    ADMIN_ID,
    SIGN_IN_PAGE,
    AzureDevOpsStandIn,
    Fault,
    declared_parameters,
)

PAT = "SANDBOX-ADMIN-PAT-SENTINEL-4e1b"
ANN_PAT = "SANDBOX-ANN-PAT-SENTINEL-77c0"
ANN = "0f4a1a2c-5e6d-4c3b-9a8f-7e6d5c4b3a21"
BOB = "9c2b7d0e-1f3a-4b5c-8d6e-2a1b0c9d8e7f"
PARAMETERS = {
    "modelPackageArn": "arn:aws:sagemaker:eu-west-1:111122223333:model-package/churn-xgb/4",
    "modelPackageGroupName": "churn-xgb",
    "modelPackageVersion": "4",
    "sourceEventId": "evt-1",
}
PRODUCTION = "smbridge-demo-production"


def basic(pat: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f":{pat}".encode()).decode()}


SUPPRESS = {"X-TFS-FedAuthRedirect": "Suppress"}


@pytest.fixture
def stand_in() -> AzureDevOpsStandIn:
    return AzureDevOpsStandIn(pat=PAT)


@pytest.fixture
def server(stand_in):
    with AzureDevOpsServer(stand_in, hold_seconds=5) as running:
        yield running
    # every test below that does not expect one leaves no contract violation behind
    assert stand_in.violations == []
    assert stand_in.unimplemented == []


@pytest.fixture
def sleeps() -> list[float]:
    return []


def client_for(server: AzureDevOpsServer, pat: str, sleeps: list[float] | None = None, **kw: Any):
    sleep = sleeps.append if sleeps is not None else (lambda _: None)
    credential = PatCredential(pat, source="test")
    return AzureDevOpsClient(server.organization_url("contoso"), credential, sleep=sleep, **kw)


def runs_url(server: AzureDevOpsServer, pipeline_id: int = 13) -> str:
    return f"{server.organization_url()}/mlops/_apis/pipelines/{pipeline_id}/runs?api-version=7.1"


def spec_schema(spec_file: str, definition: str) -> dict[str, Any]:
    spec = json.loads((REFERENCE_DIR / spec_file).read_text(encoding="utf-8-sig"))
    return {"$ref": f"#/definitions/{definition}", "definitions": spec["definitions"]}


# -- where it listens -----------------------------------------------------------------------------


def test_the_server_listens_on_a_free_loopback_port_with_the_services_paths(server):
    assert server.base_url == f"http://127.0.0.1:{server.port}/"
    assert server.port > 0
    assert server.organization_url("contoso") == f"http://127.0.0.1:{server.port}/contoso"
    assert server.bridge_environ("contoso", "mlops") == {
        "SMBRIDGE_AZURE_DEVOPS__ORGANIZATION": f"http://127.0.0.1:{server.port}/contoso",
        "SMBRIDGE_AZURE_DEVOPS__PROJECT": "mlops",
    }
    # the bridge takes that organization URL as is (plain http only on loopback)
    assert client_for(server, PAT).base_url == server.organization_url("contoso")


def test_without_a_clone_the_sandbox_says_what_it_needs(tmp_path, monkeypatch):
    monkeypatch.setattr(ado_contract, "REPOSITORY_ROOT", tmp_path)  # an installed wheel
    with pytest.raises(SandboxUnavailable, match="needs a clone of the smbridge repository"):
        ado_contract.AzureDevOpsContract()
    with pytest.raises(SandboxUnavailable, match=r"azure-pipelines/model-deploy\.yml not found"):
        declared_parameters()
    assert SandboxUnavailable.exit_code == 2


def test_it_refuses_to_listen_beyond_loopback():
    with pytest.raises(ValueError, match="loopback only"):
        AzureDevOpsServer(host="0.0.0.0")


# -- runs -----------------------------------------------------------------------------------------


def test_a_run_started_through_the_bridge_client(server, stand_in):
    run = client_for(server, PAT).run_pipeline(
        "mlops", 13, template_parameters=PARAMETERS, ref_name="refs/heads/main"
    )
    assert run.id == 1000
    assert run.template_parameters == PARAMETERS
    assert run.web_url == f"{server.organization_url()}/mlops/_build?id=1000"
    assert len(stand_in.runs) == 1
    assert stand_in.operations() == ["Runs_Run Pipeline"]
    assert stand_in.run_requesters[1000]["id"] == ADMIN_ID


def test_the_run_answer_is_a_run_of_the_spec(server):
    body = {"templateParameters": PARAMETERS}
    answer = requests.post(runs_url(server), json=body, headers={**basic(PAT), **SUPPRESS})
    assert answer.status_code == 200  # Runs - Run Pipeline: 200 is the spec's only success
    assert answer.headers["Content-Type"].startswith("application/json")
    run = answer.json()
    # The spec types Run.templateParameters as a map of objects (the server's Dictionary<string,
    # object>); the service returns the strings it was given, so that one field is left out.
    shape = {k: v for k, v in run.items() if k != "templateParameters"}
    jsonschema.validate(shape, spec_schema("ado-openapi-pipelines-7.1-pipelines.json", "Run"))
    assert (run["state"], run["pipeline"]["id"], run["templateParameters"]) == (
        "inProgress",
        13,
        PARAMETERS,
    )


def test_an_undeclared_parameter_gets_the_services_400(server, stand_in):
    body = {"templateParameters": {**PARAMETERS, "stage": "prod"}}
    answer = requests.post(runs_url(server), json=body, headers={**basic(PAT), **SUPPRESS})
    assert answer.status_code == 400
    error = answer.json()
    assert error["message"] == "Unexpected parameter 'stage'"
    assert error["typeKey"] == "PipelineValidationException"
    assert set(error) == {
        "$id",
        "innerException",
        "message",
        "typeName",
        "typeKey",
        "errorCode",
        "eventId",
    }
    with pytest.raises(AzureDevOpsError, match=r"HTTP 400: Unexpected parameter 'stage'"):
        client_for(server, PAT).run_pipeline(
            "mlops", 13, template_parameters={**PARAMETERS, "stage": "prod"}
        )
    assert stand_in.runs == []


def test_the_declared_parameters_are_read_from_the_pipeline_yaml(tmp_path, server):
    assert declared_parameters() == set(PARAMETERS)  # azure-pipelines/model-deploy.yml
    pipeline = tmp_path / "other.yml"
    pipeline.write_text("parameters:\n  - name: only\n    type: string\n    default: ' '\n")
    other = AzureDevOpsStandIn.for_pipeline_yaml(pipeline, pat=PAT)
    assert other.declared == {"only"}
    with AzureDevOpsServer(other) as second:
        ado = client_for(second, PAT)
        assert ado.run_pipeline("mlops", 13, template_parameters={"only": "x"}).id == 1000
        with pytest.raises(AzureDevOpsError, match="Unexpected parameter 'modelPackageArn'"):
            ado.run_pipeline("mlops", 13, template_parameters=PARAMETERS)
    assert other.violations == []


def test_builds_are_paged_with_the_continuation_header(server, stand_in):
    stand_in.builds_page_size = 2
    ado = client_for(server, PAT)
    for n in range(5):
        ado.run_pipeline("mlops", 13, template_parameters={**PARAMETERS, "sourceEventId": str(n)})
    builds = ado.list_builds("mlops", 13)
    assert [b.template_parameters["sourceEventId"] for b in builds] == ["4", "3", "2", "1", "0"]
    assert stand_in.operations().count("Builds_List") == 3


# -- credentials ----------------------------------------------------------------------------------


def test_a_refused_credential_gets_the_sign_in_page_unless_suppressed(server, stand_in):
    url = f"{server.organization_url()}/mlops/_apis/pipelines/approvals?api-version=7.1"
    page = requests.get(url, headers=basic("wrong"))
    assert page.status_code == 203
    assert page.headers["Content-Type"].startswith("text/html")
    assert page.text == SIGN_IN_PAGE
    refused = requests.get(url, headers={**basic("wrong"), **SUPPRESS})
    assert (refused.status_code, refused.content) == (401, b"")
    with pytest.raises(AzureDevOpsError, match="HTTP 401"):
        approvals.list_approvals(client_for(server, "wrong"), "mlops")
    everything = page.text + refused.text + repr(stand_in)
    assert PAT not in everything
    assert base64.b64encode(f":{PAT}".encode()).decode() not in everything


# -- throttling and transport faults --------------------------------------------------------------


def test_a_throttled_request_gets_429_with_retry_after(server, stand_in):
    stand_in.throttle(count=1, retry_after=7)
    url = f"{server.organization_url()}/mlops/_apis/pipelines/approvals?api-version=7.1"
    throttled = requests.get(url, headers={**basic(PAT), **SUPPRESS})
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "7"
    assert throttled.headers["X-RateLimit-Remaining"] == "0"
    assert throttled.json()["message"].startswith("TF400733: ")
    assert requests.get(url, headers={**basic(PAT), **SUPPRESS}).status_code == 200


def test_the_bridge_waits_retry_after_then_gets_its_answer(server, stand_in, sleeps):
    stand_in.throttle(count=1, retry_after=7)
    assert approvals.list_approvals(client_for(server, PAT, sleeps), "mlops") == []
    assert sleeps == [7.0]
    assert stand_in.operations() == ["Approvals_Query", "Approvals_Query"]


def test_a_throttle_fault_on_one_operation(server, stand_in):
    stand_in.faults.append(Fault.throttled(retry_after=11))
    with pytest.raises(AzureDevOpsError) as caught:
        client_for(server, PAT).run_pipeline("mlops", 13, template_parameters=PARAMETERS)
    assert (caught.value.status, caught.value.retry_after) == (429, 11.0)
    assert stand_in.runs == []


def test_a_dropped_connection_after_the_run_was_created(server, stand_in):
    stand_in.faults.append(Fault("connection", processed=True))
    with pytest.raises(AzureDevOpsError, match="connection failed") as caught:
        client_for(server, PAT).run_pipeline("mlops", 13, template_parameters=PARAMETERS)
    assert caught.value.maybe_processed
    assert len(stand_in.runs) == 1


def test_a_held_request_times_out_on_the_client(server, stand_in):
    stand_in.faults.append(Fault("timeout"))
    ado = client_for(server, PAT, timeout=(2.0, 0.2))
    with pytest.raises(AzureDevOpsError, match="timed out"):
        ado.run_pipeline("mlops", 13, template_parameters=PARAMETERS)
    assert stand_in.runs == []


# -- the contract ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url_tail", "body", "problem"),
    [
        ("pipelines/13/runs?api-version=7.1", {"templateParameter": {}},
         "unknown body property 'templateParameter'"),
        ("pipelines/13/runs?api-version=6.0", {}, "api-version must be 7.1, got 6.0"),
        ("pipelines/13/runs", {}, "api-version missing"),
        ("pipelines/13/runz?api-version=7.1", {}, "no such operation in the reference specs"),
        ("pipelines/13/runs?api-version=7.1", {"templateParameters": {"v": [PAT]}},
         "is not of type 'string'"),
    ],
)  # fmt: skip
def test_a_request_that_breaks_the_contract_is_refused_loudly(
    server, stand_in, url_tail, body, problem
):
    url = f"{server.organization_url()}/mlops/_apis/{url_tail}"
    answer = requests.post(url, json=body, headers={**basic(PAT), **SUPPRESS})
    assert answer.status_code == 400
    error = answer.json()
    assert error["typeKey"] == "SandboxContractViolation"
    assert error["message"].startswith(
        "smbridge sandbox: the request breaks the Azure DevOps REST contract"
    )
    assert problem in error["message"]
    (violation,) = stand_in.violations
    assert violation.method == "POST"
    assert violation.path.startswith("/contoso/mlops/_apis/pipelines/13/run")
    assert problem in violation.message
    assert PAT not in answer.text + violation.message  # a secret in the body is masked
    assert stand_in.requests == [] and stand_in.runs == []  # refused before anything happened
    stand_in.violations.clear()  # expected: the fixture checks there is no other


# -- the gate: a pending approval, decided by a named reviewer ------------------------------------


def setup_params(approvers: list[dict[str, str]]) -> SetupParams:
    settings = EnvironmentsSettings.model_validate(
        {
            "prefix": "smbridge-demo",
            "pipeline_id": 13,
            "production_approval": {
                "approvers": approvers,
                "minimum_approvers": 1,
                "timeout_minutes": 4320,
                "instructions": "Check the staging endpoint tests before approving.",
                "requester_cannot_approve": True,
            },
        }
    )
    return SetupParams.from_settings(settings, organization="contoso", project="mlops")


def test_a_run_waits_at_the_gate_until_a_named_reviewer_approves(server, stand_in):
    admin = client_for(server, PAT)
    setup_environments(
        setup_params([{"id": ANN, "display_name": "Ann"}, {"id": BOB}]), client=admin
    )
    assert {e["name"] for e in stand_in.environments} == {"smbridge-demo-staging", PRODUCTION}
    stand_in.add_reviewer("Ann", ANN_PAT, identity_id=ANN)
    run = admin.run_pipeline("mlops", 13, template_parameters=PARAMETERS)

    pending = stand_in.request_approval(PRODUCTION, run.id)
    assert pending["status"] == "pending"
    assert [s["assignedApprover"]["id"] for s in pending["steps"]] == [ANN, BOB]
    assert [s["status"] for s in pending["steps"]] == ["pending", "pending"]

    ann = client_for(server, ANN_PAT)
    (listed,) = approvals.list_approvals(ann, "mlops")
    assert (listed.id, listed.status, listed.min_required_approvers) == (
        pending["id"],
        "pending",
        1,
    )
    assert listed.instructions == "Check the staging endpoint tests before approving."
    assert (listed.pipeline_name, listed.run_name) == ("model-deploy", "20261123.1000")
    assert [s.approver_name for s in listed.steps] == ["Ann", ""]

    with pytest.raises(AzureDevOpsError, match=r"HTTP 400: Admin is not an approver"):
        approvals.update_approval(admin, "mlops", pending["id"], "approved", "self-approval")
    decided = approvals.update_approval(ann, "mlops", pending["id"], "approved", "tests green")
    assert decided.status == "approved"
    assert (decided.steps[0].status, decided.steps[0].comment) == ("approved", "tests green")
    assert decided.steps[0].actual_approver_name == "Ann"
    assert decided.steps[1].status == "pending"  # one of two was enough
    assert stand_in.wait_for_decision(pending["id"], timeout=0) == "approved"
    assert approvals.get_approval(ann, "mlops", pending["id"]).status == "approved"

    with pytest.raises(AzureDevOpsError, match="HTTP 409"):
        approvals.update_approval(ann, "mlops", pending["id"], "rejected", "too late")
    assert stand_in.approval(pending["id"])["status"] == "approved"


def test_the_requester_of_the_run_may_not_approve_it(server, stand_in):
    """requesterCannotBeApprover: the identity that started the run (here the trigger's PAT,
    the admin) is blocked on its approval even though the check names it."""
    admin = client_for(server, PAT)
    setup_environments(setup_params([{"id": ADMIN_ID}, {"id": ANN}]), client=admin)
    stand_in.add_reviewer("Ann", ANN_PAT, identity_id=ANN)
    run = admin.run_pipeline("mlops", 13, template_parameters=PARAMETERS)
    pending = stand_in.request_approval(PRODUCTION, run.id)
    assert [b["id"] for b in pending["blockedApprovers"]] == [ADMIN_ID]
    with pytest.raises(AzureDevOpsError, match="HTTP 400"):
        approvals.update_approval(admin, "mlops", pending["id"], "approved", "mine")
    rejected = approvals.update_approval(
        client_for(server, ANN_PAT), "mlops", pending["id"], "rejected", "AUC dropped"
    )
    assert rejected.status == "rejected"


def test_the_cli_approves_as_the_reviewer(server, stand_in, monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    setup_environments(
        setup_params([{"id": ANN, "display_name": "Ann"}]), client=client_for(server, PAT)
    )
    stand_in.add_reviewer("Ann", ANN_PAT, identity_id=ANN)
    run = client_for(server, PAT).run_pipeline("mlops", 13, template_parameters=PARAMETERS)
    pending = stand_in.request_approval(PRODUCTION, run.id)
    monkeypatch.setenv("SMBRIDGE_ADO_PAT", ANN_PAT)
    for name, value in server.bridge_environ("contoso", "mlops").items():
        monkeypatch.setenv(name, value)
    argv = ["ado", "approvals", "approve", pending["id"], "--comment", "staging is green"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.out == f"approval {pending['id']}: approved\n"
    assert ANN_PAT not in captured.out + captured.err
    assert stand_in.approval(pending["id"])["steps"][0]["actualApprover"]["id"] == ANN


def test_an_environment_without_an_approval_check_has_no_gate(stand_in):
    stand_in.add_environment(PRODUCTION)
    with pytest.raises(ValueError, match="0 Approval checks"):
        stand_in.request_approval(PRODUCTION, 1000)


# -- lifecycle ------------------------------------------------------------------------------------


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_the_port_is_closed_after_the_block(stand_in):
    session = requests.Session()
    with AzureDevOpsServer(stand_in) as server:
        port = server.port
        url = f"{server.organization_url()}/mlops/_apis/pipelines/approvals?api-version=7.1"
        assert session.get(url, headers={**basic(PAT), **SUPPRESS}).status_code == 200
    assert not server.running
    assert refused(port)
    with pytest.raises(requests.ConnectionError):  # the kept-alive connection is gone too
        session.get(url, headers={**basic(PAT), **SUPPRESS})
    assert len(stand_in.requests) == 1


def test_the_port_is_closed_when_the_block_raises(stand_in):
    with pytest.raises(RuntimeError, match="demo failed"), AzureDevOpsServer(stand_in) as server:
        port = server.port
        raise RuntimeError("demo failed")
    assert not server.running
    assert refused(port)
    server.stop()  # idempotent
