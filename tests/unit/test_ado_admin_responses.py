"""Answers of the ``smbridge ado`` operations are never used unchecked.

A 2xx whose body lacks what the bridge needs is one :class:`AzureDevOpsError` that names the
operation (``request.what``), the HTTP status and the field, with ``maybe_processed`` (the
service did answer 2xx) — never a ``KeyError``, ``TypeError``, ``ValueError`` or
``AttributeError``. What the answers carry is taken from the 7.1 specs in reference/:

- ado-openapi-distributedTask-7.1-environments.json: ``Environments_List`` / ``Environments_Add``
  answer ``EnvironmentInstance`` (``id``: integer int32, ``name``/``description``: string).
- ado-openapi-approvalsAndChecks-7.1-pipelinesChecks.json: ``Check Configurations_List`` /
  ``_Add`` / ``_Update`` answer ``CheckConfiguration`` (``id`` from ``CheckConfigurationRef``:
  integer; ``type``: ``CheckType``, ``resource``: ``Resource`` objects; ``timeout``: integer;
  ``isDisabled``: boolean); an Approval check's ``settings`` are ``ApprovalConfigSettings``
  (``ApprovalConfig``: ``approvers`` an array of ``IdentityRef``, ``minRequiredApprovers`` an
  integer, ``instructions`` a string, ``executionOrder`` the ``ApprovalExecutionOrder`` enum
  ``anyOrder``/``inSequence``; plus ``requesterCannotBeApprover``: boolean).
- ado-openapi-approvalsAndChecks-7.1-pipelinesapproval.json: ``Approvals_Query`` and
  ``Approvals_Update`` answer 200 with ``Approval[]`` (``{"count", "value"}`` on the wire),
  ``Approvals_Get`` one ``Approval`` (``id``: string, format uuid; ``steps``: array of
  ``ApprovalStep``, whose ``assignedApprover`` is an ``IdentityRef``).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import responses

from bridge.ado import setup as ado_setup
from bridge.ado.setup import setup_environments
from bridge.azure_devops import approvals, environments
from bridge.azure_devops.client import AzureDevOpsClient, AzureDevOpsError
from bridge.azure_devops.credentials import PatCredential
from bridge.azure_devops.environments import (
    APPROVAL_CHECK_TYPE_ID,
    ApprovalCheck,
    Environment,
    Identity,
)
from bridge.core.output import Reporter
from tests.support.fake_ado import FakeAzureDevOps
from tests.unit.test_ado_setup import (  # noqa: F401 (smbridge: fixture)
    ANN,
    PAT,
    TOKEN,
    approval_params,
    methods,
    params,
    smbridge,
)

APPROVAL_ID = "aab27959-a5be-4ee3-97ca-f19b3602cd2f"
OTHER_ID = "0f4a1a2c-5e6d-4c3b-9a8f-7e6d5c4b3a21"
PRODUCTION = Environment(id=2, name="smbridge-demo-production")
CHECK = ApprovalCheck(approvers=(Identity(ANN),), min_required_approvers=1, timeout_minutes=60)
ANY_URL = re.compile(r"https://dev\.azure\.com/.*")


@pytest.fixture
def client() -> AzureDevOpsClient:
    return AzureDevOpsClient("contoso", PatCredential(PAT, source="test"), sleep=lambda _: None)


@pytest.fixture
def fake():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield FakeAzureDevOps(pat=PAT, accepted_auth={f"Bearer {TOKEN}"}).install(mock)


def answering(body: Any, status: int = 200) -> responses.RequestsMock:
    """Every request gets ``body`` (JSON, or no body at all for ``None``)."""
    mock = responses.RequestsMock(assert_all_requests_are_fired=False)
    content = "" if body is None else json.dumps(body)
    for method in ("GET", "POST", "PATCH"):
        mock.add(method, ANY_URL, body=content, status=status, content_type="application/json")
    return mock


def approval_check(changes: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A ``CheckConfiguration`` of an Approval check: ``changes`` to its settings, ``fields``
    replacing its own."""
    return {
        "id": 20,
        "type": {"id": APPROVAL_CHECK_TYPE_ID, "name": "Approval"},
        "resource": {"type": "environment", "id": "2", "name": PRODUCTION.name},
        "timeout": 60,
        "settings": {"approvers": [{"id": ANN}], "minRequiredApprovers": 1, **changes},
        **fields,
    }


def listed(*items: Any) -> dict[str, Any]:
    return {"count": len(items), "value": list(items)}


OPERATIONS = {
    "list_environments": (
        lambda c: environments.list_environments(c, "mlops", name="e"),
        "Environments - List e in mlops",
    ),
    "add_environment": (
        lambda c: environments.add_environment(c, "mlops", "e"),
        "Environments - Add e in mlops",
    ),
    "list_checks": (
        lambda c: environments.list_checks(c, "mlops", "environment", "2"),
        "Check Configurations - List on environment 2 in mlops",
    ),
    "add_check": (
        lambda c: environments.add_approval_check(c, "mlops", PRODUCTION, CHECK),
        f"Check Configurations - Add Approval on environment {PRODUCTION.name} in mlops",
    ),
    "update_check": (
        lambda c: environments.update_approval_check(c, "mlops", 20, PRODUCTION, CHECK),
        f"Check Configurations - Update 20 (Approval on environment {PRODUCTION.name}) in mlops",
    ),
    "list_approvals": (
        lambda c: approvals.list_approvals(c, "mlops"),
        "Approvals - Query (pending) in mlops",
    ),
    "get_approval": (
        lambda c: approvals.get_approval(c, "mlops", APPROVAL_ID),
        f"Approvals - Get {APPROVAL_ID} in mlops",
    ),
    "update_approval": (
        lambda c: approvals.update_approval(c, "mlops", APPROVAL_ID, "approved", "ok"),
        f"Approvals - Update (approve {APPROVAL_ID}) in mlops",
    ),
}
ITEM = ", item 1 of 'value'"

MALFORMED = [
    # -- EnvironmentInstance --
    ("list_environments", {}, " without 'value' in the response"),
    ("list_environments", {"count": 1, "value": {"id": 1}},
     " with 'value' not a list but an object"),
    ("list_environments", listed("e"), f"{ITEM} with a string instead of a JSON object"),
    ("list_environments", listed({"name": "e"}), f"{ITEM} without 'id' in the response"),
    ("list_environments", listed({"id": "1", "name": "e"}),
     f"{ITEM} with 'id' not an integer but a string"),
    ("list_environments", listed({"id": 1, "name": ["e"]}),
     f"{ITEM} with 'name' not a string but a list"),
    ("add_environment", None, " with an empty body or null instead of a JSON object"),
    ("add_environment", {}, " without 'id' in the response"),
    ("add_environment", [{"id": 1}], " with a list instead of a JSON object"),
    ("add_environment", {"id": 1.5, "name": "e"}, " with 'id' not an integer but a number"),
    # -- CheckConfiguration / ApprovalConfigSettings --
    ("list_checks", None, " with an empty body or null instead of a list"),
    ("list_checks", listed({"type": {"id": APPROVAL_CHECK_TYPE_ID}}),
     f"{ITEM} without 'id' in the response"),
    ("list_checks", listed(approval_check({}, id=True)),
     f"{ITEM} with 'id' not an integer but a boolean"),
    ("list_checks", listed(approval_check({}, type="Approval")),
     f"{ITEM} with 'type' not an object but a string"),
    ("list_checks", listed(approval_check({}, settings=["x"])),
     f"{ITEM} with 'settings' not an object but a list"),
    ("list_checks", listed(approval_check({}, timeout="60")),
     f"{ITEM} with 'timeout' not an integer but a string"),
    ("list_checks", listed(approval_check({"minRequiredApprovers": "1"})),
     f"{ITEM} with 'settings.minRequiredApprovers' not an integer but a string"),
    ("list_checks", listed(approval_check({"approvers": ANN})),
     f"{ITEM} with 'settings.approvers' not a list but a string"),
    ("list_checks", listed(approval_check({"approvers": [ANN]})),
     f"{ITEM} with 'settings.approvers' item 1 not an object but a string"),
    ("list_checks", listed(approval_check({"approvers": [{"displayName": "Ann"}]})),
     f"{ITEM} without 'settings.approvers[1].id' in the response"),
    ("list_checks", listed(approval_check({"requesterCannotBeApprover": "true"})),
     f"{ITEM} with 'settings.requesterCannotBeApprover' not a boolean but a string"),
    ("list_checks", listed(approval_check({"executionOrder": ["anyOrder"]})),
     f"{ITEM} with 'settings.executionOrder' not a string but a list"),
    ("add_check", {}, " without 'id' in the response"),
    ("add_check", None, " with an empty body or null instead of a JSON object"),
    ("update_check", {"id": "x"}, " with 'id' not an integer but a string"),
    ("update_check", approval_check({"blockedApprovers": {"id": ANN}}),
     " with 'settings.blockedApprovers' not a list but an object"),
    # -- Approval --
    ("list_approvals", {"count": 0}, " without 'value' in the response"),
    ("list_approvals", listed({"status": "pending"}), f"{ITEM} without 'id' in the response"),
    ("list_approvals", listed({"id": 7, "status": "pending"}),
     f"{ITEM} with 'id' not a string but a number"),
    ("list_approvals", listed({"id": APPROVAL_ID, "steps": "ann"}),
     f"{ITEM} with 'steps' not a list but a string"),
    ("list_approvals", listed({"id": APPROVAL_ID, "steps": [{"assignedApprover": ANN}]}),
     f"{ITEM} with 'steps[1].assignedApprover' not an object but a string"),
    ("list_approvals", listed({"id": APPROVAL_ID, "minRequiredApprovers": "1"}),
     f"{ITEM} with 'minRequiredApprovers' not an integer but a string"),
    ("list_approvals", listed({"id": APPROVAL_ID, "pipeline": {"owner": "run"}}),
     f"{ITEM} with 'pipeline.owner' not an object but a string"),
    ("get_approval", {}, " without 'id' in the response"),
    ("get_approval", APPROVAL_ID, " with a string instead of a JSON object"),
    ("update_approval", {"count": 1, "value": [{"approvalId": APPROVAL_ID}]},
     f"{ITEM} without 'id' in the response"),
    ("update_approval", listed({"id": OTHER_ID, "status": "approved"}),
     f" without approval {APPROVAL_ID} in 'value'"),
    ("update_approval", listed(), f" without approval {APPROVAL_ID} in 'value'"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("operation", "body", "problem"),
    MALFORMED,
    ids=[f"{op}-{n}" for n, (op, *_) in enumerate(MALFORMED, 1)],
)
def test_a_malformed_2xx_is_one_error_naming_the_operation_and_the_field(
    client, operation, body, problem
):
    call, what = OPERATIONS[operation]
    with answering(body), pytest.raises(AzureDevOpsError) as caught:
        call(client)
    assert str(caught.value).startswith(f"{what}: HTTP 200{problem}")
    assert caught.value.maybe_processed  # the service answered 2xx: it may have acted
    assert caught.value.status is None and not caught.value.retryable


def test_well_formed_answers_with_only_the_needed_fields_still_parse(client):
    """Absent optional fields keep their defaults: only ``id`` is required."""
    with answering(listed({"id": 3})):
        (environment,) = environments.list_environments(client, "mlops")
    assert environment == Environment(id=3, name="")
    with answering({"id": 4}):  # a name-less answer keeps the name asked for
        assert environments.add_environment(client, "mlops", "e") == Environment(id=4, name="e")
    with answering(listed({"id": 20, "type": {"id": APPROVAL_CHECK_TYPE_ID}})):
        (check,) = environments.list_checks(client, "mlops", "environment", "2")
    assert check.is_approval and check.approval().execution_order == "anyOrder"
    with answering(listed({"id": APPROVAL_ID})):
        (approval,) = approvals.list_approvals(client, "mlops")
    assert (approval.id, approval.status, approval.steps) == (APPROVAL_ID, "", ())


# -- Approvals - Update answered 200 with an empty body -----------------------------------------


def test_an_approval_update_answered_200_without_a_body_is_an_error_not_a_guess(client):
    """The spec's success answer is ``Approval[]`` holding the updated approval. An empty body
    says nothing about the outcome (with two approvers it may still be pending), so it is not
    reported as "approved": it is an error saying the decision may have been recorded."""
    decision = ado_setup.ApprovalDecisionParams(
        organization="contoso", project="mlops", approval_id=APPROVAL_ID, comment="ok"
    )
    with answering(None) as mock:
        with pytest.raises(AzureDevOpsError) as caught:
            ado_setup.approve(decision, client=client, reporter=Reporter())
        sent = [call.request.method for call in mock.calls]
    assert str(caught.value) == (
        f"Approvals - Update (approve {APPROVAL_ID}) in mlops: HTTP 200 with an empty body "
        "instead of the updated approval: the decision may have been recorded, check with "
        "'smbridge ado approvals list --state all' before repeating it"
    )
    assert caught.value.maybe_processed
    assert sent == ["PATCH"]  # no guessing GET, no retry


def test_cli_an_empty_approval_update_answer_is_one_line_exit_3(smbridge, monkeypatch, capsys):  # noqa: F811
    monkeypatch.setenv("SMBRIDGE_ADO_PAT", PAT)
    with answering(None):
        code = smbridge(["ado", "approvals", "approve", APPROVAL_ID, "--comment", "ok"])
    captured = capsys.readouterr()
    assert code == 3
    assert captured.out == ""
    assert captured.err.startswith(f"error: Approvals - Update (approve {APPROVAL_ID}) in mlops")
    assert captured.err.count("\n") == 1
    assert PAT not in captured.err


# -- setup over malformed answers -----------------------------------------------------------------


def test_setup_stops_at_a_malformed_approval_check_without_writing(fake, client):
    setup_environments(params(), client=client)
    fake.checks[0]["settings"]["approvers"] = ANN  # a string where the spec has IdentityRef[]
    fake.requests.clear()
    with pytest.raises(AzureDevOpsError, match=r"'settings\.approvers' not a list but a string"):
        setup_environments(params(), client=client)
    assert set(methods(fake)) == {"GET"}


def test_setup_names_the_environment_list_with_an_item_without_id(fake, client):
    fake.environments.append({"name": "smbridge-demo-staging"})  # no "id"
    with pytest.raises(AzureDevOpsError) as caught:
        setup_environments(params(), client=client)
    assert str(caught.value) == (
        "Environments - List smbridge-demo-staging in mlops: HTTP 200, item 1 of 'value' "
        "without 'id' in the response"
    )
    assert methods(fake) == ["GET"]


# -- executionOrder: the name or the enum's number ----------------------------------------------


@pytest.mark.parametrize("stored", [1, "AnyOrder"])
def test_an_execution_order_returned_as_a_number_does_not_patch_every_run(fake, client, stored):
    """``ApprovalExecutionOrder`` (ApprovalConfig, pipelinesChecks spec): anyOrder, inSequence;
    a check made elsewhere can hold the enum's number (1, 2) in its stored settings."""
    setup_environments(params(), client=client)
    fake.checks[0]["settings"]["executionOrder"] = stored
    fake.requests.clear()
    result = setup_environments(params(), client=client)
    assert result.approval_check.action == "unchanged"
    assert set(methods(fake)) == {"GET"}  # reads only: no PATCH, no POST


def test_execution_order_numbers_compare_by_name_both_ways(fake, client):
    setup_environments(params(), client=client)
    fake.checks[0]["settings"]["executionOrder"] = 1  # anyOrder
    in_sequence = approval_params(execution_order="inSequence")
    changed = setup_environments(in_sequence, client=client).approval_check
    assert (changed.action, changed.changed) == ("updated", ["executionOrder"])
    assert fake.checks[0]["settings"]["executionOrder"] == "inSequence"  # written as the name
    fake.checks[0]["settings"]["executionOrder"] = 2  # inSequence, as a number
    fake.requests.clear()
    assert setup_environments(in_sequence, client=client).approval_check.action == "unchanged"
    assert "PATCH" not in methods(fake)
    back = setup_environments(params(), client=client).approval_check
    assert (back.action, back.changed) == ("updated", ["executionOrder"])
    fake.checks[0]["settings"]["executionOrder"] = 7  # no such value: rewritten, not an error
    unknown = setup_environments(params(), client=client).approval_check
    assert (unknown.action, unknown.changed) == ("updated", ["executionOrder"])
    assert fake.checks[0]["settings"]["executionOrder"] == "anyOrder"


def test_an_approvals_execution_order_number_is_shown_by_name(client):
    with answering(listed({"id": APPROVAL_ID, "status": "pending", "executionOrder": 2})):
        (approval,) = approvals.list_approvals(client, "mlops")
    assert approval.execution_order == "inSequence"
