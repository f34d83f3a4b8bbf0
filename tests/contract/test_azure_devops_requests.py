"""Every Azure DevOps request the bridge makes, held against the official OpenAPI specs in
reference/ (method, path, api-version, query parameters, body)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from bridge.azure_devops.client import AzureDevOpsClient
from bridge.azure_devops.credentials import SecretCredential
from bridge.sandbox.ado_contract import AzureDevOpsContract

CONTRACT = AzureDevOpsContract()


@pytest.fixture
def recorded():
    calls: list[tuple[str, str, object]] = []

    def answer(request):
        calls.append((request.method, request.url, request.body))
        if "/_apis/build/builds" in request.url:
            return 200, {}, json.dumps({"count": 0, "value": []})
        return 200, {}, json.dumps({"id": 7, "name": "r", "state": "inProgress"})

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        for method in ("GET", "POST"):
            mock.add_callback(method, re.compile(r"https://dev\.azure\.com/.*"), answer)
        yield calls


def client() -> AzureDevOpsClient:
    return AzureDevOpsClient("contoso", SecretCredential(lambda: "pat", source="test"))


def test_run_pipeline_request_fits_runs_run_pipeline(recorded):
    client().run_pipeline(
        "ML Ops",
        12,
        template_parameters={"modelPackageArn": "arn", "modelPackageVersion": "4"},
        ref_name="refs/heads/main",
    )
    ((method, url, body),) = recorded
    assert CONTRACT.check(method, url, body) == "Runs_Run Pipeline"
    assert "/ML%20Ops/" in url  # the project name is escaped


def test_list_builds_request_fits_builds_list(recorded):
    client().list_builds("mlops", 12, min_time=datetime(2026, 11, 20, 9, 0, tzinfo=UTC))
    ((method, url, body),) = recorded
    assert CONTRACT.check(method, url, body) == "Builds_List"


def test_every_page_of_builds_list_fits_the_spec():
    # Source: reference/ado-openapi-build-7.1-builds.json declares the query parameter
    # ``continuationToken``; the next page's token comes in the ``x-ms-continuationtoken``
    # response header (Microsoft's azure_devops_rust_api example build_list_continuation_token.rs,
    # and azure-devops-python-api 5.1.0b2 "get_builds ... continuation_token").
    calls: list[tuple[str, str, object]] = []
    pages = iter([("page-2", [{"id": 3}]), ("page-3", [{"id": 2}]), (None, [{"id": 1}])])

    def answer(request):
        calls.append((request.method, request.url, request.body))
        token, value = next(pages)
        headers = {"x-ms-continuationtoken": token} if token else {}
        return 200, headers, json.dumps({"count": len(value), "value": value})

    with responses.RequestsMock() as mock:
        mock.add_callback("GET", re.compile(r"https://dev\.azure\.com/.*"), answer)
        builds = client().list_builds("mlops", 12, min_time=datetime(2026, 11, 20, tzinfo=UTC))
    assert [b.id for b in builds] == [3, 2, 1]
    assert [CONTRACT.check(*call) for call in calls] == ["Builds_List"] * 3
    tokens = [parse_qs(urlsplit(url).query).get("continuationToken") for _, url, _ in calls]
    assert tokens == [None, ["page-2"], ["page-3"]]


def test_every_request_suppresses_the_sign_in_redirect():
    # Source: without ``X-TFS-FedAuthRedirect: Suppress`` Azure DevOps answers a refused PAT with
    # HTTP 203 and an HTML sign-in page instead of 401 (team notes; Microsoft's azure-devops
    # Python client sets the header on every request: azext_devops/devops_sdk/client.py).
    headers: list[str | None] = []

    def answer(request):
        headers.append(request.headers.get("X-TFS-FedAuthRedirect"))
        if request.method == "GET":
            return 200, {}, json.dumps({"count": 0, "value": []})
        if len(headers) == 1:
            return 401, {}, ""  # the retry with the secret read again must carry it too
        return 200, {}, json.dumps({"id": 7})

    with responses.RequestsMock() as mock:
        for method in ("GET", "POST"):
            mock.add_callback(method, re.compile(r"https://dev\.azure\.com/.*"), answer)
        ado = client()
        ado.run_pipeline("mlops", 12, template_parameters={})
        ado.list_builds("mlops", 12)
    assert headers == ["Suppress"] * 3


@pytest.mark.parametrize(
    ("method", "url", "body", "problem"),
    [
        ("POST", "https://dev.azure.com/o/p/_apis/pipelines/12/runs?api-version=7.1",
         {"templateParameters": {"v": 4}}, "is not of type 'string'"),
        ("POST", "https://dev.azure.com/o/p/_apis/pipelines/12/runs?api-version=7.1",
         {"templateParameter": {}}, "unknown body property"),
        ("POST", "https://dev.azure.com/o/p/_apis/pipelines/12/runs", {}, "api-version missing"),
        ("POST", "https://dev.azure.com/o/p/_apis/pipelines/12/runs?api-version=6.0", {},
         "must be 7.1"),
        ("POST", "https://dev.azure.com/o/p/_apis/pipelines/abc/runs?api-version=7.1", {},
         "must be an integer"),
        ("GET", "https://dev.azure.com/o/p/_apis/build/builds?definition=12&api-version=7.1",
         None, "undeclared query parameter 'definition'"),
        ("PUT", "https://dev.azure.com/o/p/_apis/pipelines/12/runs?api-version=7.1", {},
         "no such operation"),
        ("POST", "http://dev.azure.com/o/p/_apis/pipelines/12/runs?api-version=7.1", {},
         "https only"),
    ],
)  # fmt: skip
def test_the_contract_rejects_what_the_service_would(method, url, body, problem):
    with pytest.raises(Exception, match=problem):
        CONTRACT.check(method, url, json.dumps(body) if body is not None else None)
