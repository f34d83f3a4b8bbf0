"""The requests of ``smbridge ado`` (environments, check configurations, pipeline permissions,
approvals), held against the official 7.1 specs and the recorded examples in
reference/ado-examples/."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
import responses

from bridge.azure_devops import approvals, environments, permissions
from bridge.azure_devops.client import AzureDevOpsClient
from bridge.azure_devops.credentials import PatCredential
from bridge.azure_devops.environments import ApprovalCheck, Environment, Identity
from bridge.sandbox.ado_contract import REFERENCE_DIR, AzureDevOpsContract

CONTRACT = AzureDevOpsContract()
EXAMPLES = REFERENCE_DIR / "ado-examples"
APPROVER = "3b3db741-9d03-4e32-a7c0-6c3dfc2013c1"
APPROVAL_ID = "aab27959-a5be-4ee3-97ca-f19b3602cd2f"
CHECK = ApprovalCheck(
    approvers=(Identity(APPROVER),),
    min_required_approvers=1,
    timeout_minutes=43200,
    instructions="Instructions",
)
PRODUCTION = Environment(id=1, name="smbridge-demo-production")


PERMISSIONS_GET = "pipelinePermissions-GET__GetPipelinePermissionsForResource.json"
PERMISSIONS_PATCH = "pipelinePermissions-PATCH__UpdatePipelinePermissionsForResource.json"
GRANT = "Pipeline Permissions_Update Pipeline Permisions For Resource"


def example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8-sig"))


@pytest.fixture
def recorded():
    calls: list[tuple[str, str, Any]] = []

    def answer(request):
        calls.append((request.method, request.url, request.body))
        if f"/approvals/{APPROVAL_ID}" in request.url:
            return 200, {}, json.dumps({"id": APPROVAL_ID, "status": "pending"})
        if "/approvals" in request.url:
            return 200, {}, json.dumps({"count": 1, "value": [{"id": APPROVAL_ID}]})
        if "/pipelinepermissions/" in request.url:
            recorded = example(PERMISSIONS_GET if request.method == "GET" else PERMISSIONS_PATCH)
            return 200, {}, json.dumps(recorded["responses"]["200"]["body"])
        if request.method == "GET":
            return 200, {}, json.dumps({"count": 0, "value": []})
        return 200, {}, json.dumps({"id": 7, "name": "n", "type": {}, "resource": {}})

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        for method in ("GET", "POST", "PATCH"):
            mock.add_callback(method, re.compile(r"https://dev\.azure\.com/.*"), answer)
        yield calls


def client() -> AzureDevOpsClient:
    return AzureDevOpsClient("contoso", PatCredential("pat", source="test"))


CALLS = [
    ("Environments_List", "7.1", lambda c: environments.list_environments(c, "ML Ops", name="e")),
    ("Environments_Add", "7.1", lambda c: environments.add_environment(c, "mlops", "e", "d")),
    (
        "Check Configurations_List",
        "7.1-preview.1",
        lambda c: environments.list_checks(c, "mlops", "environment", "1"),
    ),
    (
        "Check Configurations_Add",
        "7.1-preview.1",
        lambda c: environments.add_approval_check(c, "mlops", PRODUCTION, CHECK),
    ),
    (
        "Check Configurations_Update",
        "7.1-preview.1",
        lambda c: environments.update_approval_check(c, "mlops", 22, PRODUCTION, CHECK),
    ),
    (
        "Check Configurations_Add",
        "7.1-preview.1",
        lambda c: environments.add_exclusive_lock_check(c, "mlops", PRODUCTION),
    ),
    (
        "Pipeline Permissions_Get",
        "7.1-preview.1",
        lambda c: permissions.get_permissions(c, "mlops", "environment", "1"),
    ),
    (
        GRANT,
        "7.1-preview.1",
        lambda c: permissions.authorise_pipeline(c, "mlops", "environment", "1", 16),
    ),
    ("Approvals_Query", "7.1", lambda c: approvals.list_approvals(c, "mlops", top=10)),
    ("Approvals_Get", "7.1", lambda c: approvals.get_approval(c, "mlops", APPROVAL_ID)),
    (
        "Approvals_Update",
        "7.1",
        lambda c: approvals.update_approval(c, "mlops", APPROVAL_ID, "approved", "ok"),
    ),
    (
        "Approvals_Update",
        "7.1",
        lambda c: approvals.update_approval(c, "mlops", APPROVAL_ID, "rejected", "no"),
    ),
]


@pytest.mark.parametrize(("operation", "version", "call"), CALLS, ids=[c[0] for c in CALLS])
def test_each_request_fits_its_operation_and_exact_api_version(recorded, operation, version, call):
    call(client())
    ((method, url, body),) = recorded
    assert CONTRACT.check(method, url, body) == operation
    assert f"api-version={version}&" in url + "&"


def test_check_configuration_body_matches_the_recorded_approval_example():
    recorded_body = example("configurations-POST__AddApprovalCheckConfiguration.json")
    recorded_body = recorded_body["parameters"]["body"]
    body = environments.approval_check_body(PRODUCTION, CHECK)
    assert body["type"] == recorded_body["type"]
    assert body.keys() == recorded_body.keys()
    assert body["resource"] == {"type": "environment", "id": "1", "name": PRODUCTION.name}
    # the recorded example plus requesterCannotBeApprover (ApprovalConfigSettings, spec 7.1)
    assert set(body["settings"]) == {*recorded_body["settings"], "requesterCannotBeApprover"}
    assert body["settings"]["approvers"] == [{"id": APPROVER}]  # no "displayName": null
    for key in ("executionOrder", "instructions", "blockedApprovers"):
        assert body["settings"][key] == recorded_body["settings"][key]


def test_exclusive_lock_body_is_the_documented_one():
    """reference/README.md and Microsoft's Terraform provider (azuredevops_check_exclusive_lock):
    type id 2ef31ad6-baa0-403a-8b45-2cbc9b4e5563, name ExclusiveLock, empty settings; the same
    envelope (type, resource, timeout, settings) as the recorded Approval check example."""
    recorded_body = example("configurations-POST__AddApprovalCheckConfiguration.json")
    body = environments.exclusive_lock_check_body(PRODUCTION)
    assert body.keys() == recorded_body["parameters"]["body"].keys()
    assert body["type"] == {"id": "2ef31ad6-baa0-403a-8b45-2cbc9b4e5563", "name": "ExclusiveLock"}
    assert body["resource"] == {"type": "environment", "id": "1", "name": PRODUCTION.name}
    assert body["settings"] == {}
    assert body["timeout"] == 43200  # the longest a check allows, as the provider's example


def test_pipeline_permission_requests_are_the_recorded_ones():
    """pipelinePermissions-GET/PATCH__…ForResource.json: same method, path (the examples write
    pipelinePermissions, the spec pipelinepermissions; the service's routes ignore case) and
    PATCH body."""
    base = "https://dev.azure.com/fabrikam"
    ours = {
        PERMISSIONS_GET: permissions.get_permissions_request("RM", "queue", "1"),
        PERMISSIONS_PATCH: permissions.authorise_pipeline_request("RM", "queue", "1", 16),
    }
    for name, request in ours.items():
        recorded = example(name)
        assert request.method == recorded["x-ms-vss-request-method"]
        assert request.url(base).split("?")[0].lower() == recorded["x-ms-vss-request-url"].lower()
        assert request.body == recorded["parameters"].get("body")


def test_the_recorded_permissions_answer_is_read_as_the_pipelines_it_authorises():
    answer = example(PERMISSIONS_GET)["responses"]["200"]["body"]
    read = permissions._permissions(answer, "Pipeline Permissions - Get", "queue", "1")
    assert read.pipelines == {6, 15, 16}
    assert read.authorises(16) and not read.authorises(13)
    assert not read.all_pipelines


def test_approval_update_body_matches_the_recorded_example():
    recorded_body = example("approvals-PATCH__UpdateApproval.json")["parameters"]["body"]
    request = approvals.update_approval_request("RM", APPROVAL_ID, "approved", "Approving")
    assert request.body == recorded_body


def test_recorded_example_urls_parse_like_ours():
    """Our paths are the recorded ones (apart from api-version and our $expand)."""
    base = "https://dev.azure.com/fabrikam"
    ours = {
        "approvals-PATCH__UpdateApproval.json": approvals.update_approval_request(
            "RM", APPROVAL_ID, "approved", "x"
        ),
        "configurations-POST__AddApprovalCheckConfiguration.json": (
            environments.add_approval_check_request("RM", PRODUCTION, CHECK)
        ),
    }
    for name, request in ours.items():
        recorded_url = example(name)["x-ms-vss-request-url"]
        assert request.url(base).split("?")[0] == recorded_url
        assert request.method == example(name)["x-ms-vss-request-method"]


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


@pytest.mark.parametrize(
    ("name", "version", "operation"),
    [
        ("configurations-POST__AddApprovalCheckConfiguration.json", "7.1-preview.1",
         "Check Configurations_Add"),
        ("configurations-POST__AddTaskCheckConfiguration.json", "7.1-preview.1",
         "Check Configurations_Add"),
        ("configurations-PATCH__TaskCheckConfiguration.json", "7.1-preview.1",
         "Check Configurations_Update"),
        ("approvals-PATCH__UpdateApproval.json", "7.1", "Approvals_Update"),
        ("configurations-GET__CheckConfigurationsOnResource.json", "7.1-preview.1",
         "Check Configurations_List"),
        (PERMISSIONS_GET, "7.1-preview.1", "Pipeline Permissions_Get"),
        (PERMISSIONS_PATCH, "7.1-preview.1", GRANT),
        ("pipelinePermissions-PATCH__UpdatePipelinePermissionsForResources.json",
         "7.1-preview.1", "Pipeline Permissions_Update Pipeline Permisions For Resources"),
    ],
)  # fmt: skip
def test_the_contract_accepts_the_recorded_requests(name, version, operation):
    """The recorded examples are 6.1-preview.1; their 7.1 twins must pass. The service takes
    ``"displayName": null``, which the spec types as a string: nulls are dropped here."""
    data = example(name)
    # the service's routes ignore case; the specs (and our requests) write pipelinepermissions
    url = data["x-ms-vss-request-url"].replace("pipelinePermissions", "pipelinepermissions")
    url += ("&" if "?" in url else "?") + f"api-version={version}"
    body = data["parameters"].get("body")
    body = json.dumps(_drop_nulls(body)) if body is not None else None
    assert CONTRACT.check(data["x-ms-vss-request-method"], url, body) == operation


CHECKS_URL = "https://dev.azure.com/o/p/_apis/pipelines/checks/configurations"
PERMISSIONS_URL = "https://dev.azure.com/o/p/_apis/pipelines/pipelinepermissions/environment/1"
LOCK_BODY = environments.exclusive_lock_check_body(PRODUCTION)
APPROVALS_URL = "https://dev.azure.com/o/p/_apis/pipelines/approvals"
GOOD_BODY = environments.approval_check_body(PRODUCTION, CHECK)


def _with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(GOOD_BODY)
    node = body
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return body


@pytest.mark.parametrize(
    ("method", "url", "body", "problem"),
    [
        ("POST", f"{CHECKS_URL}?api-version=7.1", GOOD_BODY, "must be 7.1-preview.1"),
        ("GET", f"{CHECKS_URL}?resourceType=environment&api-version=7.1-preview", None,
         "must be 7.1-preview.1"),
        ("PATCH", f"{APPROVALS_URL}?api-version=7.1-preview.1", [], "must be 7.1, got"),
        ("POST", f"{CHECKS_URL}?api-version=7.1-preview.1",
         _with(("settings", "minApprovers"), 1), "unknown body property 'minApprovers'"),
        ("POST", f"{CHECKS_URL}?api-version=7.1-preview.1",
         _with(("settings", "requesterCannotBeApprover"), "yes"), "is not of type 'boolean'"),
        ("POST", f"{CHECKS_URL}?api-version=7.1-preview.1",
         _with(("settings", "executionOrder"), "parallel"), "is not one of"),
        ("POST", f"{CHECKS_URL}?api-version=7.1-preview.1",
         _with(("resource", "id"), 1), "is not of type 'string'"),
        ("POST", f"{CHECKS_URL}?api-version=7.1-preview.1",
         _with(("type", "id"), "0000"), "unknown check type"),
        ("POST", f"{CHECKS_URL}?api-version=7.1-preview.1",
         {k: v for k, v in GOOD_BODY.items() if k != "settings"}, "needs 'settings'"),
        ("PATCH", f"{CHECKS_URL}/abc?api-version=7.1-preview.1", GOOD_BODY, "must be an integer"),
        ("PATCH", f"{APPROVALS_URL}?api-version=7.1",
         [{"approvalId": "not-a-uuid", "status": "approved"}], "is not a 'uuid'"),
        ("PATCH", f"{APPROVALS_URL}?api-version=7.1",
         [{"approvalId": APPROVAL_ID, "status": "approve"}], "is not one of"),
        ("PATCH", f"{APPROVALS_URL}?api-version=7.1",
         [{"approvalId": APPROVAL_ID, "decision": "approved"}], "unknown body property"),
        ("GET", "https://dev.azure.com/o/p/_apis/distributedtask/environments?top=1"
         "&api-version=7.1", None, "undeclared query parameter 'top'"),
        ("POST", f"{CHECKS_URL}?api-version=7.1-preview.1",
         {**LOCK_BODY, "settings": {"displayName": "x"}}, "an ExclusiveLock check has no settings"),
        ("GET", f"{PERMISSIONS_URL}?api-version=7.1", None, "must be 7.1-preview.1"),
        ("PATCH", f"{PERMISSIONS_URL}?api-version=7.1-preview.1",
         {"pipelines": [{"id": "16", "authorized": True}]}, "is not of type 'integer'"),
        ("PATCH", f"{PERMISSIONS_URL}?api-version=7.1-preview.1",
         {"pipelines": [{"id": 16, "authorised": True}]}, "unknown body property 'authorised'"),
        ("PATCH", f"{PERMISSIONS_URL}?api-version=7.1-preview.1",
         {"pipelineIds": [16]}, "unknown body property 'pipelineIds'"),
    ],
)  # fmt: skip
def test_the_contract_rejects_what_the_service_would(method, url, body, problem):
    with pytest.raises(Exception, match=problem):
        CONTRACT.check(method, url, json.dumps(body) if body is not None else None)
