"""``smbridge ado setup``: environments, their Exclusive Lock checks, the production Approval
check and the model-deploy pipeline's permission on both, idempotently."""

from __future__ import annotations

import argparse
import json
from collections import deque
from pathlib import Path
from typing import Any

import pytest
import responses
from pydantic import ValidationError

from bridge.ado.setup import (
    ApprovalDecisionParams,
    ApprovalsListParams,
    EnvironmentsSettings,
    SetupParams,
    plan_decision,
    plan_list_approvals,
    plan_setup,
    setup_environments,
)
from bridge.azure_devops.client import (
    ApiRequest,
    AzureDevOpsClient,
    AzureDevOpsError,
)
from bridge.azure_devops.credentials import (
    BearerTokenCredential,
    PatCredential,
    credential_from_environ,
)
from bridge.azure_devops.environments import (
    APPROVAL_CHECK_TYPE_ID,
    EXCLUSIVE_LOCK_CHECK_TYPE_ID,
)
from bridge.cli import app as cli
from bridge.cli.ado import add_ado_commands
from bridge.core.output import Reporter
from bridge.errors import CredentialsError, UserError
from tests.support.fake_ado import FakeAzureDevOps, Fault

PAT = "ADO-PAT-SENTINEL-7f3a9c"
TOKEN = "SYSTEM-ACCESS-TOKEN-SENTINEL-51d2"
ANN = "3b3db741-9d03-4e32-a7c0-6c3dfc2013c1"
BOB = "0f4a1a2c-5e6d-4c3b-9a8f-7e6d5c4b3a21"
CAROL = "9c2b7d0e-1f3a-4b5c-8d6e-2a1b0c9d8e7f"
PIPELINE = 13  # model-deploy's id (the fake knows pipelines 12 and 13)
SETTINGS = {
    "prefix": "smbridge-demo",
    "pipeline_id": PIPELINE,
    "production_approval": {
        "approvers": [{"id": ANN, "display_name": "Ann"}, {"id": BOB}],
        "minimum_approvers": 1,
        "timeout_minutes": 4320,
        "instructions": "Check the staging endpoint tests before approving.",
        "requester_cannot_approve": True,
    },
}


def params(**changes: Any) -> SetupParams:
    return SetupParams.from_settings(
        EnvironmentsSettings.model_validate(SETTINGS), organization="contoso", project="mlops"
    ).model_copy(update=changes)


def approval_params(**approval: Any) -> SetupParams:
    settings = json.loads(json.dumps(SETTINGS))
    settings["production_approval"].update(approval)
    return SetupParams.from_settings(
        EnvironmentsSettings.model_validate(settings), organization="contoso", project="mlops"
    )


@pytest.fixture
def fake():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield FakeAzureDevOps(pat=PAT, accepted_auth={f"Bearer {TOKEN}"}).install(mock)


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(sleeps) -> AzureDevOpsClient:
    return AzureDevOpsClient("contoso", PatCredential(PAT, source="test"), sleep=sleeps.append)


def methods(fake: FakeAzureDevOps) -> list[str]:
    return [method for method, *_ in fake.requests]


# -- setup ----------------------------------------------------------------------------------------


GRANT = "Pipeline Permissions_Update Pipeline Permisions For Resource"
SECOND_RUN = [  # what a run that finds everything in place asks: reads only
    "Environments_List",
    "Environments_List",
    "Check Configurations_List",
    "Check Configurations_List",
    "Pipeline Permissions_Get",
    "Pipeline Permissions_Get",
]


def approval_checks(fake: FakeAzureDevOps) -> list[dict[str, Any]]:
    return [c for c in fake.checks if c["type"].get("id") == APPROVAL_CHECK_TYPE_ID]


def lock_checks(fake: FakeAzureDevOps) -> list[dict[str, Any]]:
    return [
        c for c in fake.checks if c["type"].get("id", "").lower() == EXCLUSIVE_LOCK_CHECK_TYPE_ID
    ]


def test_first_run_creates_both_environments_and_the_approval_check(fake, client):
    result = setup_environments(params(), client=client, reporter=Reporter())

    assert [(e.name, e.action) for e in result.environments] == [
        ("smbridge-demo-staging", "created"),
        ("smbridge-demo-production", "created"),
    ]
    assert result.approval_check.action == "created"
    # a new environment has no checks: no List before the Adds; the gate comes first
    assert fake.operations() == [
        "Environments_List",
        "Environments_Add",
        "Environments_List",
        "Environments_Add",
        "Check Configurations_Add",
        "Check Configurations_Add",
        "Check Configurations_Add",
        "Pipeline Permissions_Get",
        GRANT,
        "Pipeline Permissions_Get",
        GRANT,
    ]
    assert result.requests_made == 11
    (check,) = approval_checks(fake)
    assert fake.checks[0] is check  # production is gated before anything is locked
    production = next(e for e in fake.environments if e["name"] == "smbridge-demo-production")
    assert check["type"] == {"id": APPROVAL_CHECK_TYPE_ID, "name": "Approval"}
    assert check["resource"] == {
        "type": "environment",
        "id": str(production["id"]),
        "name": "smbridge-demo-production",
    }
    assert check["timeout"] == 4320
    assert check["settings"] == {
        "approvers": [{"id": ANN, "displayName": "Ann"}, {"id": BOB}],
        "executionOrder": "anyOrder",
        "minRequiredApprovers": 1,
        "instructions": "Check the staging endpoint tests before approving.",
        "blockedApprovers": [],
        "requesterCannotBeApprover": True,
    }


def test_second_run_makes_only_gets_and_changes_nothing(fake, client):
    setup_environments(params(), client=client, reporter=Reporter())
    before = json.dumps([fake.environments, fake.checks, list(fake.permissions.values())])
    fake.requests.clear()

    result = setup_environments(params(), client=client, reporter=Reporter())

    assert set(methods(fake)) == {"GET"}
    assert fake.operations() == SECOND_RUN
    assert "%24expand=settings" in fake.requests[3][1]  # settings are compared
    assert [e.action for e in result.environments] == ["unchanged", "unchanged"]
    assert result.approval_check.action == "unchanged"
    assert [c.action for c in result.exclusive_locks] == ["unchanged", "unchanged"]
    assert [p.action for p in result.pipeline_permissions] == ["unchanged", "unchanged"]
    assert result.requests_made == 6
    assert json.dumps([fake.environments, fake.checks, list(fake.permissions.values())]) == before


def test_a_changed_approver_list_is_one_patch_naming_the_field(fake, client, capsys):
    setup_environments(params(), client=client, reporter=Reporter())
    fake.requests.clear()
    changed = approval_params(approvers=[{"id": ANN}, {"id": CAROL}])

    result = setup_environments(changed, client=client, reporter=Reporter())

    assert methods(fake) == ["GET"] * 4 + ["PATCH"] + ["GET"] * 2
    assert fake.operations()[4] == "Check Configurations_Update"
    assert result.approval_check.action == "updated"
    assert result.approval_check.changed == ["approvers"]
    assert [a["id"] for a in fake.checks[0]["settings"]["approvers"]] == [ANN, CAROL]
    assert "updated (id 20): approvers" in capsys.readouterr().out
    fake.requests.clear()
    assert setup_environments(changed, client=client).approval_check.action == "unchanged"
    assert set(methods(fake)) == {"GET"}


def test_approver_order_and_id_case_do_not_count_in_any_order(fake, client):
    setup_environments(params(), client=client)
    fake.requests.clear()
    reordered = approval_params(approvers=[{"id": BOB.upper()}, {"id": ANN}])
    assert setup_environments(reordered, client=client).approval_check.action == "unchanged"
    assert "PATCH" not in methods(fake)


def test_every_differing_setting_is_reported(fake, client):
    setup_environments(params(), client=client)
    changed = approval_params(
        minimum_approvers=2,
        timeout_minutes=60,
        instructions="new",
        requester_cannot_approve=False,
        execution_order="inSequence",
    )
    result = setup_environments(changed, client=client)
    assert result.approval_check.changed == [
        "minRequiredApprovers",
        "instructions",
        "requesterCannotBeApprover",
        "executionOrder",
        "timeout",
    ]
    assert fake.checks[0]["timeout"] == 60
    assert fake.checks[0]["settings"]["minRequiredApprovers"] == 2


def test_an_update_keeps_identities_blocked_by_hand(fake, client):
    setup_environments(params(), client=client)
    blocked = [{"id": CAROL, "displayName": "Carol"}]
    fake.checks[0]["settings"]["blockedApprovers"] = blocked
    setup_environments(approval_params(instructions="changed"), client=client)
    assert fake.checks[0]["settings"]["blockedApprovers"] == blocked


def test_existing_environments_with_other_checks_get_the_approval_check(fake, client):
    fake.add_environment("smbridge-demo-staging")
    production = fake.add_environment("SMBRIDGE-DEMO-PRODUCTION")  # names are case-insensitive
    fake.add_environment("smbridge-demo-production-old")  # the service's filter also finds this
    fake.add_check(
        {
            "type": {"id": "fe1de3ee-a436-41b4-bb20-f6eb4cb879a7", "name": "Task Check"},
            "resource": {"type": "environment", "id": str(production["id"]), "name": "x"},
            "timeout": 43200,
            "settings": {"displayName": "Business Hours"},
        }
    )
    result = setup_environments(params(), client=client)
    assert [e.action for e in result.environments] == ["unchanged", "unchanged"]
    assert result.environments[1].id == production["id"]
    assert result.approval_check.action == "created"
    assert fake.operations()[2:7] == [
        "Check Configurations_List",
        "Check Configurations_List",
        "Check Configurations_Add",  # Approval
        "Check Configurations_Add",  # ExclusiveLock, staging
        "Check Configurations_Add",  # ExclusiveLock, production
    ]


def test_two_approval_checks_are_refused_without_any_write(fake, client):
    setup_environments(params(), client=client)
    fake.add_check(dict(fake.checks[0]))
    fake.requests.clear()
    with pytest.raises(UserError, match=r"has 2 Approval checks \(ids 20, 23\); expected one"):
        setup_environments(params(), client=client)
    assert set(methods(fake)) == {"GET"}


def test_setup_reads_both_environments_checks_before_writing_any(fake, client):
    """Two Approval checks on production: not even staging's missing lock is created."""
    fake.add_environment("smbridge-demo-staging")
    production = fake.add_environment("smbridge-demo-production")
    body = {
        "type": {"id": APPROVAL_CHECK_TYPE_ID, "name": "Approval"},
        "resource": {"type": "environment", "id": str(production["id"]), "name": "x"},
        "timeout": 60,
        "settings": {"approvers": [{"id": ANN}]},
    }
    fake.add_check(body)
    fake.add_check(body)
    with pytest.raises(UserError, match="has 2 Approval checks"):
        setup_environments(params(), client=client)
    assert set(methods(fake)) == {"GET"}
    assert lock_checks(fake) == []


def test_an_environment_created_concurrently_is_found_again(fake, client, monkeypatch):
    """Another setup creates it between our GET and POST: the POST's 400 is not an error."""
    import tests.support.fake_ado as fake_module

    handlers = dict(fake_module._ADMIN_HANDLERS)
    raced: list[bool] = []

    def racing_list(self: FakeAzureDevOps, request: Any) -> tuple[int, dict[str, str], str]:
        if not raced:
            raced.append(True)
            self.add_environment("smbridge-demo-staging")  # by someone else, meanwhile
            return 200, {}, json.dumps({"count": 0, "value": []})
        return FakeAzureDevOps._environments_list(self, request)

    handlers["Environments_List"] = racing_list
    monkeypatch.setattr(fake_module, "_ADMIN_HANDLERS", handlers)
    result = setup_environments(params(), client=client)
    assert result.environments[0].action == "unchanged"
    assert fake.operations()[:3] == ["Environments_List", "Environments_Add", "Environments_List"]
    assert len(fake.environments) == 2


def test_dry_run_makes_no_request_and_prints_the_plan(fake, capsys):
    result = setup_environments(params(dry_run=True), client=None, reporter=Reporter())
    assert capsys.readouterr().out == ""  # the SDK is silent: the CLI renders the plan
    out = "\n".join(result.plan.lines())
    assert fake.requests == []
    assert result.approval_check.action == "planned"
    assert [(r.method, r.when) for r in result.planned_requests] == [
        ("GET", ""),
        ("POST", "if it does not exist"),
        ("GET", ""),
        ("POST", "if it does not exist"),
        ("GET", "if smbridge-demo-staging already exists"),
        ("GET", "if smbridge-demo-production already exists"),
        ("POST", "if it has no Approval check"),
        ("PATCH", "if its Approval check differs"),
        ("POST", "if it has no Exclusive Lock check"),
        ("POST", "if it has no Exclusive Lock check"),
        ("GET", ""),
        ("PATCH", "if pipeline 13 is not authorised on smbridge-demo-staging"),
        ("GET", ""),
        ("PATCH", "if pipeline 13 is not authorised on smbridge-demo-production"),
    ]
    assert "resourceId={id of smbridge-demo-production}" in out
    assert "/configurations/{check id}?api-version=7.1-preview.1" in out
    assert result.planned_requests[6].body["resource"]["id"] == "{id of smbridge-demo-production}"
    # the Exclusive Lock checks (model-deploy.yml's lockBehavior: sequential needs them)
    for request, name in zip(result.planned_requests[8:10], ("staging", "production"), strict=True):
        assert request.body["type"]["id"] == EXCLUSIVE_LOCK_CHECK_TYPE_ID
        assert request.body["resource"]["id"] == f"{{id of smbridge-demo-{name}}}"
        assert request.body["settings"] == {}
    # the pipeline permissions, path placeholders shown as written
    assert (
        "/pipelines/pipelinepermissions/environment/{id of smbridge-demo-staging}"
        "?api-version=7.1-preview.1" in out
    )
    assert result.planned_requests[11].body == {"pipelines": [{"id": 13, "authorized": True}]}
    assert [c.action for c in result.exclusive_locks] == ["planned", "planned"]
    assert [p.action for p in result.pipeline_permissions] == ["planned", "planned"]
    assert "(no call made)" in out


def test_plans_are_pure_and_match_the_dry_run(fake):
    """plan_* take the parameters alone (no client, no credential) and equal the dry run's."""
    dry = setup_environments(params(dry_run=True), client=None)
    assert plan_setup(params()).as_dict() == dry.plan.as_dict()
    listing = plan_list_approvals(ApprovalsListParams(organization="contoso", project="mlops"))
    assert [s.operation.split(" ")[0] for s in listing.steps] == ["GET"]
    decision = ApprovalDecisionParams(
        organization="contoso",
        project="mlops",
        approval_id="0d7b1f6c-5a8e-4c43-9f0e-2b1c3d4e5f60",
        comment="looks good",
    )
    step = plan_decision(decision, "rejected").steps[0]
    assert step.operation.startswith("PATCH https://dev.azure.com/contoso/mlops/_apis/pipelines")
    assert step.arguments[0]["status"] == "rejected"
    assert fake.requests == []


def test_setup_without_a_client_is_a_user_error():
    with pytest.raises(UserError, match="needs an Azure DevOps client"):
        setup_environments(params(), client=None)


# -- Exclusive Lock checks (issue 8 item 15) ------------------------------------------------------
# Source: Microsoft's "Approvals and checks" (Exclusive lock): a stage's lockBehavior (model-deploy
# says sequential) only orders runs on resources that carry an Exclusive Lock check; its type id
# and name as reference/README.md and Microsoft's Terraform provider
# (azuredevops_check_exclusive_lock) give them, with empty settings.


def test_both_environments_get_an_exclusive_lock_check(fake, client, capsys):
    result = setup_environments(params(), client=client, reporter=Reporter())

    environments = {e["name"]: str(e["id"]) for e in fake.environments}
    assert [(c["resource"]["name"], c["resource"]["id"]) for c in lock_checks(fake)] == [
        ("smbridge-demo-staging", environments["smbridge-demo-staging"]),
        ("smbridge-demo-production", environments["smbridge-demo-production"]),
    ]
    for check in lock_checks(fake):
        assert check["type"] == {"id": EXCLUSIVE_LOCK_CHECK_TYPE_ID, "name": "ExclusiveLock"}
        assert check["resource"]["type"] == "environment"
        assert check["settings"] == {}
        assert check["timeout"] == 43200
    assert [(c.environment, c.action) for c in result.exclusive_locks] == [
        ("smbridge-demo-staging", "created"),
        ("smbridge-demo-production", "created"),
    ]
    out = capsys.readouterr().out
    assert "Exclusive Lock check on smbridge-demo-staging: created (id 21)" in out
    assert "Exclusive Lock check on smbridge-demo-production: created (id 22)" in out


def test_an_exclusive_lock_already_there_is_kept_as_it_is(fake, client):
    """One made elsewhere (Terraform sends the id upper-case and a displayName) counts; one
    known only by its type name counts too: no second lock, no write."""
    staging = fake.add_environment("smbridge-demo-staging")
    production = fake.add_environment("smbridge-demo-production")
    fake.add_check(
        {
            "type": {"id": EXCLUSIVE_LOCK_CHECK_TYPE_ID.upper()},
            "resource": {"type": "environment", "id": str(staging["id"])},
            "timeout": 1440,
            "settings": {"displayName": "Managed by Terraform"},
        }
    )
    fake.add_check(
        {
            "type": {"name": "ExclusiveLock"},
            "resource": {"type": "environment", "id": str(production["id"])},
            "timeout": 60,
            "settings": {},
        }
    )
    result = setup_environments(params(), client=client)
    assert [c.action for c in result.exclusive_locks] == ["unchanged", "unchanged"]
    assert [c.id for c in result.exclusive_locks] == [20, 21]
    assert fake.operations().count("Check Configurations_Add") == 1  # the Approval check
    assert len(fake.checks) == 3
    assert fake.checks[0]["timeout"] == 1440  # not rewritten


def test_a_disabled_exclusive_lock_is_a_warning(fake, client, capsys):
    setup_environments(params(), client=client)
    lock_checks(fake)[1]["isDisabled"] = True
    capsys.readouterr()
    fake.requests.clear()
    setup_environments(params(), client=client, reporter=Reporter())
    err = capsys.readouterr().err
    assert "warning: the Exclusive Lock check 22 on smbridge-demo-production is disabled" in err
    assert "PATCH" not in methods(fake)


def test_a_setup_cut_short_never_leaves_production_authorised_but_ungated(fake, client):
    """The Approval check (model-deploy.yml's manual gate) is the first write: if it fails,
    neither a lock nor the pipeline's permission has been written."""
    fake.add_environment("smbridge-demo-staging")
    fake.add_environment("smbridge-demo-production")
    import tests.support.fake_ado as fake_module

    calls: list[str] = []
    original = fake_module._ADMIN_HANDLERS["Check Configurations_Add"]

    def failing_add(self: FakeAzureDevOps, request: Any) -> tuple[int, dict[str, str], str]:
        calls.append(json.loads(request.body)["type"]["id"])
        if len(calls) == 1:
            return 500, {}, json.dumps({"message": "boom"})
        return original(self, request)

    handlers = {**fake_module._ADMIN_HANDLERS, "Check Configurations_Add": failing_add}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fake_module, "_ADMIN_HANDLERS", handlers)
        with pytest.raises(AzureDevOpsError, match="Add Approval"):
            setup_environments(params(), client=client)
    assert calls == [APPROVAL_CHECK_TYPE_ID]  # the gate is the first write
    assert fake.checks == []
    assert GRANT not in fake.operations()  # the pipeline may not use production yet


# -- the model-deploy pipeline's permission on both environments (issue 8 item 16) ---------------
# Source: reference/ado-openapi-approvalsAndChecks-7.1-pipelinePermissions.json (Pipeline
# Permissions - Get / Update Pipeline Permisions For Resource, api-version 7.1-preview.1) and the
# recorded example pipelinePermissions-PATCH__UpdatePipelinePermissionsForResource.json; a run
# started through the REST API stops at "needs permission" on an environment its pipeline may
# not use (Microsoft docs, "Pipeline permissions" and "Resource authorization":
# https://learn.microsoft.com/azure/devops/pipelines/process/resources#resource-authorization).


def test_the_pipeline_is_authorised_on_both_environments(fake, client, capsys):
    result = setup_environments(params(), client=client, reporter=Reporter())

    grants = [(url, json.loads(body)) for _, url, body, op in fake.requests if op == GRANT]
    environments = {e["name"]: e["id"] for e in fake.environments}
    assert [url.split("?")[0].rsplit("/", 2)[-2:] for url, _ in grants] == [
        ["environment", str(environments["smbridge-demo-staging"])],
        ["environment", str(environments["smbridge-demo-production"])],
    ]
    assert all("api-version=7.1-preview.1" in url for url, _ in grants)
    assert [body for _, body in grants] == [{"pipelines": [{"id": 13, "authorized": True}]}] * 2
    for environment_id in environments.values():
        pipelines = fake.permissions[("environment", str(environment_id))]["pipelines"]
        assert [(p["id"], p["authorized"]) for p in pipelines] == [(13, True)]
    assert [(p.environment, p.action) for p in result.pipeline_permissions] == [
        ("smbridge-demo-staging", "authorised"),
        ("smbridge-demo-production", "authorised"),
    ]
    assert "pipeline 13 on smbridge-demo-production: authorised" in capsys.readouterr().out


def test_a_pipeline_already_authorised_is_not_patched(fake, client):
    staging = fake.add_environment("smbridge-demo-staging")
    production = fake.add_environment("smbridge-demo-production")
    fake.permit("environment", str(staging["id"]), 6, 13)  # by hand, with another pipeline
    fake.permissions[("environment", str(production["id"]))] = {
        "resource": {"type": "environment", "id": str(production["id"])},
        "allPipelines": {"authorized": True},  # open access: every pipeline may use it
        "pipelines": [{"id": 13, "authorized": False}],
    }
    result = setup_environments(params(), client=client)
    assert GRANT not in fake.operations()
    assert [(p.action, p.all_pipelines) for p in result.pipeline_permissions] == [
        ("unchanged", False),
        ("unchanged", True),
    ]


def test_only_the_pipeline_itself_is_added_to_those_already_authorised(fake, client):
    staging = fake.add_environment("smbridge-demo-staging")
    fake.permit("environment", str(staging["id"]), 6)
    fake.permit("environment", str(staging["id"]), 12)
    fake.permissions[("environment", str(staging["id"]))]["pipelines"][1]["authorized"] = False
    result = setup_environments(params(), client=client)
    assert result.pipeline_permissions[0].action == "authorised"
    pipelines = fake.permissions[("environment", str(staging["id"]))]["pipelines"]
    assert {p["id"]: p["authorized"] for p in pipelines} == {6: True, 12: False, 13: True}
    fake.requests.clear()
    setup_environments(params(), client=client)
    assert fake.operations() == SECOND_RUN


def test_an_authorisation_the_answer_does_not_show_is_an_error(fake, client, monkeypatch):
    import tests.support.fake_ado as fake_module

    def ignoring(self: FakeAzureDevOps, request: Any) -> tuple[int, dict[str, str], str]:
        return FakeAzureDevOps._permissions_get(self, request)  # answers, changes nothing

    monkeypatch.setattr(
        fake_module, "_ADMIN_HANDLERS", {**fake_module._ADMIN_HANDLERS, GRANT: ignoring}
    )
    with pytest.raises(AzureDevOpsError) as caught:
        setup_environments(params(), client=client)
    assert str(caught.value).startswith(
        "Pipeline Permissions - Update (authorise pipeline 13) on environment 1 in mlops: "
        "HTTP 200 with pipeline 13 still not authorized in the answer"
    )


def test_without_a_pipeline_id_setup_warns_and_authorises_nothing(fake, client, capsys):
    result = setup_environments(params(pipeline_id=None), client=client, reporter=Reporter())
    assert not [op for op in fake.operations() if op.startswith("Pipeline Permissions")]
    assert result.pipeline_permissions == []
    err = capsys.readouterr().err
    assert err.count("warning:") == 1
    assert "warning: no model-deploy pipeline id (azure_devops.environments.pipeline_id or " in err
    assert result.warnings == [err.strip().removeprefix("warning: ")]


def test_a_pipeline_id_must_be_positive():
    settings = {**SETTINGS, "pipeline_id": 0}
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        EnvironmentsSettings.model_validate(settings)


# -- requesterCannotBeApprover with the trigger as approver (issue 8 item 18) ----------------------
# Source: ApprovalConfigSettings.requesterCannotBeApprover (pipelinesChecks spec: "Determines
# whether check requester can approve the check"): the identity that queued a run cannot approve
# it, so if the trigger's identity is needed to reach minRequiredApprovers, no triggered run can
# ever pass the gate.


def trigger_params(approvers: list[str], minimum: int = 1, **changes: Any) -> SetupParams:
    settings = json.loads(json.dumps(SETTINGS))
    settings["trigger_identity"] = ANN
    settings["production_approval"].update(
        approvers=[{"id": a} for a in approvers], minimum_approvers=minimum, **changes
    )
    return SetupParams.from_settings(
        EnvironmentsSettings.model_validate(settings), organization="contoso", project="mlops"
    )


@pytest.mark.parametrize(
    ("approvers", "minimum", "why"),
    [
        ([ANN], 1, f"the trigger's identity {ANN} is its only approver"),
        ([ANN, BOB], 2, f"the trigger's identity {ANN} leaves 1 of the 2 required approvers"),
    ],
)
def test_a_trigger_that_cannot_approve_its_own_runs_is_one_warning(
    fake, client, capsys, approvers, minimum, why
):
    result = setup_environments(
        trigger_params(approvers, minimum), client=client, reporter=Reporter()
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning: ")
    assert "the Approval check on smbridge-demo-production can never pass" in err
    assert why in err
    assert "set requester_cannot_approve: false" in err
    assert result.warnings == [err.strip().removeprefix("warning: ")]
    assert result.approval_check.action == "created"  # a warning, not a refusal


@pytest.mark.parametrize(
    ("approvers", "minimum", "changes"),
    [
        ([ANN, BOB], 1, {}),  # Bob can approve
        ([BOB], 1, {}),  # the trigger is no approver
        ([ANN], 1, {"requester_cannot_approve": False}),
    ],
)
def test_no_warning_when_someone_else_can_approve(
    fake, client, capsys, approvers, minimum, changes
):
    result = setup_environments(trigger_params(approvers, minimum, **changes), client=client)
    assert capsys.readouterr().err == ""
    assert result.warnings == []


def test_the_dry_run_warns_too(capsys):
    dry = trigger_params([ANN]).model_copy(update={"dry_run": True})
    result = setup_environments(dry, reporter=Reporter())
    assert "can never pass for runs the trigger queues" in capsys.readouterr().err
    assert len(result.warnings) == 1


# -- parameters ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"minimum_approvers": 3}, r"at most the number of approvers \(2\), got 3"),
        ({"minimum_approvers": 0}, "greater than or equal to 1"),
        ({"timeout_minutes": 43201}, "less than or equal to 43200"),
        ({"approvers": []}, "at least 1 item"),
        ({"approvers": [{"id": "ann"}]}, "valid UUID"),
        ({"approvers": [{"id": ANN}, {"id": ANN}]}, f"each approver id once, got {ANN} twice"),
        ({"approvers": [{"id": ANN, "name": "Ann"}]}, "Extra inputs"),
        ({"quorum": 1}, "Extra inputs"),
    ],
)
def test_invalid_approval_settings_are_refused(change, problem):
    settings = json.loads(json.dumps(SETTINGS))
    settings["production_approval"].update(change)
    with pytest.raises(ValidationError, match=problem):
        EnvironmentsSettings.model_validate(settings)


def test_defaults_and_names():
    settings = EnvironmentsSettings.model_validate(
        {"prefix": "demo", "production_approval": {"approvers": [{"id": ANN}]}}
    )
    built = SetupParams.from_settings(settings, organization="o", project="p", prefix="other")
    assert built.timeout_minutes == 4320  # three days
    assert built.minimum_approvers == 1
    assert built.requester_cannot_approve is True
    assert built.environment_names == ("other-staging", "other-production")
    with pytest.raises(ValidationError):
        EnvironmentsSettings.model_validate({"prefix": "bad name", "production_approval": {}})


# -- client: api-version, retries -----------------------------------------------------------------


def _get() -> ApiRequest:
    return ApiRequest(
        "GET", "mlops/_apis/distributedtask/environments", "7.1", "Environments - List"
    )


def test_gets_are_retried_after_429_honouring_retry_after(fake, client, sleeps):
    fake.admin_faults.extend([Fault("status", 429, {"Retry-After": "7"}), Fault("status", 503)])
    client.send(_get())
    assert sleeps == [7.0, 2.0]  # Retry-After, then the backoff of the second attempt
    assert len(fake.requests) == 3


def test_get_retries_are_bounded(fake, client, sleeps):
    fake.admin_faults.extend(Fault("status", 500) for _ in range(10))
    with pytest.raises(AzureDevOpsError, match="Environments - List: HTTP 500"):
        client.send(_get())
    assert len(fake.requests) == 4  # one try and three retries
    assert sleeps == [1.0, 2.0, 4.0]


def test_a_retry_after_beyond_the_cap_fails_at_once(fake, client, sleeps):
    fake.admin_faults.append(Fault("status", 429, {"Retry-After": "3600"}))
    with pytest.raises(AzureDevOpsError, match="HTTP 429"):
        client.send(_get())
    assert sleeps == []


def test_writes_are_never_retried(fake, client, sleeps):
    fake.admin_faults.append(Fault("status", 503))
    request = ApiRequest(
        "POST",
        "mlops/_apis/distributedtask/environments",
        "7.1",
        "Environments - Add x",
        body={"name": "x"},
    )
    with pytest.raises(AzureDevOpsError):
        client.send(request)
    assert len(fake.requests) == 1
    assert sleeps == []


def test_a_sign_in_page_instead_of_json_is_one_clear_error(client):
    with responses.RequestsMock() as mock:
        mock.add(responses.GET, "https://dev.azure.com/contoso/mlops/_apis/distributedtask/"
                 "environments", body="<html>sign in</html>", status=203)  # fmt: skip
        with pytest.raises(AzureDevOpsError, match="HTTP 203 without a JSON body"):
            client.send_json(_get())


# -- credentials ----------------------------------------------------------------------------------


def test_credential_from_environ_order_and_secret_safe_repr():
    both = {"SYSTEM_ACCESSTOKEN": TOKEN, "SMBRIDGE_ADO_PAT": PAT, "AZURE_DEVOPS_EXT_PAT": "x"}
    bearer = credential_from_environ(both)
    assert isinstance(bearer, BearerTokenCredential)
    assert bearer.authorization() == f"Bearer {TOKEN}"
    assert TOKEN not in repr(bearer)
    assert bearer.secrets() == [TOKEN]
    pat = credential_from_environ({"SMBRIDGE_ADO_PAT": PAT, "AZURE_DEVOPS_EXT_PAT": "other"})
    assert isinstance(pat, PatCredential)
    assert PAT not in repr(pat)
    assert PAT in pat.secrets()
    assert pat.authorization().removeprefix("Basic ") in pat.secrets()
    az = credential_from_environ({"AZURE_DEVOPS_EXT_PAT": PAT})
    assert repr(az) == "PatCredential(source='AZURE_DEVOPS_EXT_PAT')"
    with pytest.raises(CredentialsError, match="no Azure DevOps credential"):
        credential_from_environ({"SYSTEM_ACCESSTOKEN": " "})


def test_a_bearer_token_is_read_again_after_a_401():
    tokens = iter(["old", "new"])
    credential = BearerTokenCredential(lambda: next(tokens))
    assert credential.authorization() == "Bearer old"
    credential.invalidate()
    assert credential.authorization() == "Bearer new"


# -- CLI ----------------------------------------------------------------------------------------


def _has_ado(parser: argparse.ArgumentParser) -> bool:
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return "ado" in subparsers.choices


@pytest.fixture
def smbridge(monkeypatch, tmp_path):
    """``smbridge`` as a function, with ``ado`` wired in (until bridge/cli/app.py does it) and a
    bridge.yaml naming the organization and project."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AZURE_DEVOPS_EXT_PAT", raising=False)
    original = cli.build_parser
    if not _has_ado(original()):

        def build_parser() -> argparse.ArgumentParser:
            parser = original()
            subparsers = next(
                a for a in parser._actions if isinstance(a, argparse._SubParsersAction)
            )
            add_ado_commands(subparsers, cli._common_options())
            return parser

        monkeypatch.setattr(cli, "build_parser", build_parser)
    from bridge.settings.bridge_config import AzureDevOpsSettings

    section: dict[str, Any] = {"organization": "contoso", "project": "mlops"}
    if "environments" in AzureDevOpsSettings.model_fields:
        section["environments"] = SETTINGS
    else:  # until bridge/settings/bridge_config.py declares azure_devops.environments
        monkeypatch.setattr(
            "bridge.cli.ado.environments_settings",
            lambda config: EnvironmentsSettings.model_validate(SETTINGS),
        )
    import yaml

    (tmp_path / "bridge.yaml").write_text(yaml.safe_dump({"azure_devops": section}))
    return cli.main


def test_cli_setup_twice_then_json(smbridge, fake, monkeypatch, capsys):
    monkeypatch.setenv("SMBRIDGE_ADO_PAT", PAT)
    assert smbridge(["ado", "setup"]) == 0
    first = capsys.readouterr()
    assert "environment smbridge-demo-production: created" in first.out
    fake.requests.clear()
    assert smbridge(["ado", "setup", "--output", "json"]) == 0
    second = capsys.readouterr()
    document = json.loads(second.out)  # exactly one JSON document on stdout
    assert document["approval_check"]["action"] == "unchanged"
    assert document["requests_made"] == 6
    assert set(methods(fake)) == {"GET"}
    for stream in (first.out, first.err, second.out, second.err):
        assert PAT not in stream


def test_cli_setup_uses_system_accesstoken_on_an_agent(smbridge, fake, monkeypatch, capsys):
    monkeypatch.setenv("SYSTEM_ACCESSTOKEN", TOKEN)
    monkeypatch.setenv("SMBRIDGE_ADO_PAT", "not-this-one")
    assert smbridge(["ado", "setup", "--prefix", "other"]) == 0
    assert {e["name"] for e in fake.environments} == {"other-staging", "other-production"}
    assert TOKEN not in "".join(capsys.readouterr())


def test_cli_dry_run_needs_no_credential_and_sends_nothing(smbridge, fake, capsys):
    assert smbridge(["ado", "setup", "--dry-run", "--output", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert fake.requests == []
    assert document["dry_run"] is True
    assert len(document["steps"]) == 14
    assert {s["service"] for s in document["steps"]} == {"azure-devops"}


def test_cli_without_a_credential_is_one_line_exit_6(smbridge, fake, capsys):
    assert smbridge(["ado", "setup"]) == 6
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("error: no Azure DevOps credential: set SMBRIDGE_ADO_PAT")
    assert fake.requests == []


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (401, 6, "error: Environments - List smbridge-demo-staging in mlops: HTTP 401"),
        (403, 3, "error: Environments - List smbridge-demo-staging in mlops: HTTP 403: "
                 "fault 403 (the identity needs the Creator role"),
        (404, 3, "error: Environments - List smbridge-demo-staging in mlops: HTTP 404: "
                 "fault 404 (check the organization and project names)"),
    ],
)  # fmt: skip
def test_cli_http_errors_are_one_line_naming_the_operation(
    smbridge, fake, monkeypatch, capsys, status, code, message
):
    monkeypatch.setenv("SMBRIDGE_ADO_PAT", PAT)
    fake.admin_faults.extend(deque([Fault("status", status)] * 2))  # also the retry after a 401
    assert smbridge(["ado", "setup"]) == code
    captured = capsys.readouterr()
    assert captured.err.startswith(message)
    assert captured.err.count("\n") == 1
    assert PAT not in captured.out + captured.err


def test_cli_a_refused_pat_is_exit_6_and_never_printed(smbridge, fake, monkeypatch, capsys):
    monkeypatch.setenv("SMBRIDGE_ADO_PAT", "WRONG-" + PAT)
    assert smbridge(["ado", "setup", "--debug"]) == 6
    captured = capsys.readouterr()
    assert "HTTP 401" in captured.err
    assert PAT not in captured.out + captured.err
    assert len(fake.requests) == 2  # the request and its one retry after the 401


def test_cli_invalid_input_is_one_line_exit_2(smbridge, fake, capsys):
    assert smbridge(["ado", "setup", "--dry-run", "--prefix", "bad name"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --prefix: String should match pattern")
    assert err.count("\n") == 1


def test_the_bridge_yaml_section_builds_the_params(tmp_path):
    from bridge.settings.bridge_config import AzureDevOpsSettings, load_config

    if "environments" not in AzureDevOpsSettings.model_fields:
        pytest.skip(
            "bridge/settings/bridge_config.py does not declare azure_devops.environments yet"
        )
    import yaml

    path: Path = tmp_path / "bridge.yaml"
    section = {"organization": "contoso", "project": "mlops", "environments": SETTINGS}
    path.write_text(yaml.safe_dump({"azure_devops": section}))
    config = load_config(path)
    built = SetupParams.from_settings(
        config.azure_devops.environments, organization="contoso", project="mlops"
    )
    assert built == params()


def _write_config(tmp_path: Path, settings: dict[str, Any]) -> None:
    import yaml

    section = {"organization": "contoso", "project": "mlops", "environments": settings}
    (tmp_path / "bridge.yaml").write_text(yaml.safe_dump({"azure_devops": section}))


def test_cli_pipeline_id_flag_overrides_the_config(smbridge, fake, monkeypatch, capsys):
    monkeypatch.setenv("SMBRIDGE_ADO_PAT", PAT)
    assert smbridge(["ado", "setup", "--pipeline-id", "12", "--output", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [p["pipeline_id"] for p in document["pipeline_permissions"]] == [12, 12]
    for permissions in fake.permissions.values():
        assert [p["id"] for p in permissions["pipelines"]] == [12]


def test_cli_without_a_pipeline_id_warns_in_one_line(smbridge, fake, monkeypatch, tmp_path, capsys):
    _write_config(tmp_path, {k: v for k, v in SETTINGS.items() if k != "pipeline_id"})
    monkeypatch.setenv("SMBRIDGE_ADO_PAT", PAT)
    assert smbridge(["ado", "setup"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("warning: no model-deploy pipeline id")
    assert "smbridge-demo-staging and smbridge-demo-production" in err


def test_cli_warns_when_the_trigger_is_the_only_approver(
    smbridge, fake, monkeypatch, tmp_path, capsys
):
    """Source: ApprovalConfigSettings.requesterCannotBeApprover (pipelinesChecks spec)."""
    settings = json.loads(json.dumps(SETTINGS))
    settings["trigger_identity"] = ANN
    settings["production_approval"]["approvers"] = [{"id": ANN, "display_name": "Ann"}]
    _write_config(tmp_path, settings)
    monkeypatch.setenv("SMBRIDGE_ADO_PAT", PAT)
    assert smbridge(["ado", "setup", "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(
        "warning: the Approval check on smbridge-demo-production can never pass for runs the "
        f"trigger queues: requester_cannot_approve is set and the trigger's identity Ann ({ANN}) "
        "is its only approver"
    )


@pytest.mark.parametrize(("stored", "order"), [(1, "anyOrder"), (2, "inSequence")])
def test_cli_rerun_against_an_execution_order_number_makes_no_write(
    smbridge, fake, monkeypatch, tmp_path, capsys, stored, order
):
    """Source: ApprovalExecutionOrder (ApprovalConfig, pipelinesChecks spec) names anyOrder and
    inSequence; a check made elsewhere can hold the enum's number (1, 2) instead
    (environments.EXECUTION_ORDER_NUMBERS). Re-running ``smbridge ado setup`` must not PATCH."""
    settings = json.loads(json.dumps(SETTINGS))
    settings["production_approval"]["execution_order"] = order
    _write_config(tmp_path, settings)
    monkeypatch.setenv("SMBRIDGE_ADO_PAT", PAT)
    assert smbridge(["ado", "setup"]) == 0
    (check,) = approval_checks(fake)
    check["settings"]["executionOrder"] = stored
    fake.requests.clear()
    capsys.readouterr()
    assert smbridge(["ado", "setup", "--output", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["approval_check"]["action"] == "unchanged"
    assert set(methods(fake)) == {"GET"}
    assert check["settings"]["executionOrder"] == stored
