"""What the Azure DevOps client does with the answers it gets: sign-in pages instead of 401s,
2xx answers without what the bridge needs, paged ``Builds - List``, and the service's own
messages in errors (masked before they are cut)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import responses

from bridge.azure_devops.client import (
    AzureDevOpsClient,
    AzureDevOpsError,
    PipelineRun,
    collection,
    web_href,
)
from bridge.azure_devops.credentials import SecretCredential
from bridge.errors import ServiceError
from tests.support.fake_ado import SIGN_IN_PAGE, FakeAzureDevOps

PAT = "ADO-PAT-SENTINEL-7f3a9c0d1e"
RUNS_URL = "https://dev.azure.com/contoso/mlops/_apis/pipelines/12/runs"
BUILDS_URL = "https://dev.azure.com/contoso/mlops/_apis/build/builds"
ANY_ADO = re.compile(r"https://dev\.azure\.com/.*")
ARN = "arn:aws:sagemaker:eu-west-1:111122223333:model-package/churn-xgb/4"


class Secret:
    """A secret whose value the test rotates; counts the reads."""

    def __init__(self, *values: str) -> None:
        self.values = list(values)
        self.reads = 0

    def __call__(self) -> str:
        self.reads += 1
        return self.values[min(self.reads, len(self.values)) - 1]


def client(secret: Secret | None = None) -> AzureDevOpsClient:
    credential = SecretCredential(secret or Secret(PAT), source="test")
    return AzureDevOpsClient("contoso", credential, sleep=lambda _: None)


def run(ado: AzureDevOpsClient) -> PipelineRun:
    return ado.run_pipeline("mlops", 12, template_parameters={"modelPackageArn": ARN})


@pytest.fixture
def mock():
    with responses.RequestsMock() as requests_mock:
        yield requests_mock


@pytest.fixture
def fake():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as requests_mock:
        yield FakeAzureDevOps(pat=PAT).install(requests_mock)


# -- 1. A sign-in page is a refused credential --------------------------------------------------
# Source: a bad or expired PAT gets HTTP 203 with an HTML sign-in page unless the request carries
# ``X-TFS-FedAuthRedirect: Suppress`` (then 401) (team notes; Microsoft's azure-devops Python
# client sends the header on every request, azext_devops/devops_sdk/client.py).

SIGN_IN_ANSWERS = [
    {"status": 203, "body": SIGN_IN_PAGE, "content_type": "text/html"},
    {"status": 203, "body": ""},
    {"status": 200, "body": SIGN_IN_PAGE, "content_type": "text/html; charset=utf-8"},
    {"status": 200, "body": "\n  <html><body>Sign in</body></html>", "content_type": "text/plain"},
]


@pytest.mark.parametrize("answer", SIGN_IN_ANSWERS)
def test_a_sign_in_page_twice_is_a_refused_credential(mock, answer):
    mock.add(responses.POST, RUNS_URL, **answer)
    secret = Secret(PAT)
    with pytest.raises(AzureDevOpsError) as info:
        run(client(secret))
    error = info.value
    assert error.status == 401 and error.exit_code == 6
    assert "credential was refused" in str(error) and "sign-in page" in str(error)
    assert len(mock.calls) == 2  # retried once, like a 401
    assert secret.reads == 2  # the secret was read again before the retry


def test_a_sign_in_page_then_the_rotated_pat_succeeds(mock):
    mock.add(responses.POST, RUNS_URL, status=203, body=SIGN_IN_PAGE, content_type="text/html")
    mock.add(responses.POST, RUNS_URL, json={"id": 1042})
    secret = Secret("OLD-PAT", PAT)
    assert run(client(secret)).id == 1042
    assert secret.reads == 2
    assert mock.calls[1].request.headers["X-TFS-FedAuthRedirect"] == "Suppress"


def test_a_sign_in_page_on_a_get_is_not_retried_as_a_fault(mock):
    mock.add(responses.GET, BUILDS_URL, status=203, body=SIGN_IN_PAGE, content_type="text/html")
    with pytest.raises(AzureDevOpsError, match="sign-in page") as info:
        client().list_builds("mlops", 12)
    assert info.value.exit_code == 6 and not info.value.retryable
    assert len(mock.calls) == 2


def test_the_fake_answers_a_wrong_pat_with_401_because_the_client_suppresses_sign_in(fake):
    fake.pat = "another-pat"
    with pytest.raises(AzureDevOpsError, match="HTTP 401") as info:
        run(client())
    assert info.value.exit_code == 6
    assert fake.post_count() == 2


# -- 2. No answer is parsed unchecked ---------------------------------------------------------
# Source: reference/ado-openapi-pipelines-7.1-pipelines.json (``Run``: ``id`` integer) and
# reference/ado-openapi-build-7.1-builds.json (``Builds_List``: array of ``Build``, ``id``
# integer, ``templateParameters`` a map of strings); anything else must be a ServiceError with
# exit code 3, never a KeyError, TypeError or ValueError (exit code 1, "a bug").

BAD_RUNS = [
    ({}, "without 'id' in the response"),
    ({"id": None, "name": "r"}, "without 'id' in the response"),
    ({"id": "1042"}, "with 'id' not an integer but a string"),
    ({"id": 10.5}, "with 'id' not an integer but a number"),
    ({"id": True}, "with 'id' not an integer but a boolean"),
    ([{"id": 1042}], "with a list instead of a JSON object"),
    ("1042", "with a string instead of a JSON object"),
    (None, "with an empty body or null instead of a JSON object"),
    ({"id": 1, "templateParameters": ["x"]}, "with 'templateParameters' not an object but a list"),
]


@pytest.mark.parametrize(("body", "problem"), BAD_RUNS)
def test_run_pipeline_answer_without_a_run_is_a_service_error(mock, body, problem):
    mock.add(responses.POST, RUNS_URL, body=json.dumps(body))
    with pytest.raises(AzureDevOpsError) as info:
        run(client())
    assert isinstance(info.value, ServiceError) and info.value.exit_code == 3
    assert str(info.value) == f"run pipeline 12 in mlops: HTTP 200 {problem}"


def test_run_pipeline_answer_that_is_not_json_is_a_service_error(mock):
    mock.add(responses.POST, RUNS_URL, body="id=1042", content_type="text/plain")
    with pytest.raises(AzureDevOpsError, match="HTTP 200 without a JSON body") as info:
        run(client())
    assert info.value.exit_code == 3
    assert len(mock.calls) == 1  # not a sign-in page: no credential retry


def test_run_pipeline_with_an_empty_body_is_a_service_error(mock):
    mock.add(responses.POST, RUNS_URL, body="")
    with pytest.raises(AzureDevOpsError, match="HTTP 200 with an empty body"):
        run(client())


BAD_BUILDS = [
    ({"count": 1, "value": [{"id": 7}, {"buildNumber": "x"}]}, "item 2 of 'value' without 'id'"),
    ({"count": 1, "value": [{"id": "7"}]}, "item 1 of 'value' with 'id' not an integer"),
    ({"count": 1, "value": ["7"]}, "item 1 of 'value' with a string instead of a JSON object"),
    ({"count": 1, "value": {"id": 7}}, "with 'value' not a list but an object"),
    ({"count": 0}, "without 'value' in the response"),
    ("builds", "with a string instead of a list"),
    (None, "with an empty body or null instead of a list"),
]


@pytest.mark.parametrize(("body", "problem"), BAD_BUILDS)
def test_list_builds_answer_without_builds_is_a_service_error(mock, body, problem):
    mock.add(responses.GET, BUILDS_URL, body=json.dumps(body) if body is not None else "")
    with pytest.raises(AzureDevOpsError) as info:
        client().list_builds("mlops", 12)
    assert info.value.exit_code == 3
    message = str(info.value)
    assert message.startswith("list runs of pipeline 12 in mlops: HTTP 200")
    assert problem in message


def test_a_build_list_as_a_bare_array_is_read_too(mock):
    mock.add(responses.GET, BUILDS_URL, json=[{"id": 7, "templateParameters": {"v": "4"}}])
    (build,) = client().list_builds("mlops", 12)
    assert (build.id, build.template_parameters) == (7, {"v": "4"})


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({}, "Azure DevOps run without 'id' in the response"),
        ([], "Azure DevOps run with a list instead of a JSON object"),
        ({"id": "7"}, "Azure DevOps run with 'id' not an integer but a string"),
    ],
)
def test_pipeline_run_from_response_names_what_is_missing(data, problem):
    with pytest.raises(AzureDevOpsError, match=re.escape(problem)):
        PipelineRun.from_response(data)


def test_client_helpers_never_raise_lookup_or_type_errors():
    assert web_href({"_links": "x"}) == ""
    assert web_href({"_links": {"web": {"href": 5}}}) == ""
    assert web_href(None) == ""
    assert web_href({"_links": {"web": {"href": "https://x"}}}) == "https://x"
    assert collection({"count": 1, "value": [{"id": 1}]}) == [{"id": 1}]
    for data in (None, 3, {"value": None}, {"value": [1]}):
        with pytest.raises(AzureDevOpsError, match="Azure DevOps list response"):
            collection(data)


# -- 3. Builds - List is read page by page -----------------------------------------------------
# Source: reference/ado-openapi-build-7.1-builds.json (``continuationToken`` query parameter);
# the token of the next page comes in the ``x-ms-continuationtoken`` response header
# (azure-devops-python-api 5.1.0b2 release notes; azure_devops_rust_api's
# build_list_continuation_token.rs example).


def _five_runs(fake: FakeAzureDevOps, ado: AzureDevOpsClient) -> list[int]:
    ids = [run(ado).id for _ in range(5)]
    fake.requests.clear()
    return ids


def test_list_builds_follows_the_continuation_token_to_the_last_page(fake):
    ado = client()
    ids = _five_runs(fake, ado)
    fake.builds_page_size = 2
    builds = ado.list_builds("mlops", 12)
    assert [b.id for b in builds] == ids[::-1]
    assert fake.operations() == ["Builds_List"] * 3  # each one held against the spec
    assert "continuationToken=2" in fake.requests[1][1]
    assert "continuationToken=4" in fake.requests[2][1]


def test_iter_builds_asks_for_no_page_it_does_not_need(fake):
    ado = client()
    _five_runs(fake, ado)
    fake.builds_page_size = 2
    newest = next(iter(ado.iter_builds("mlops", 12)))
    assert newest.id == 1004
    assert len(fake.requests) == 1


def test_a_continuation_token_on_every_page_stops_at_the_page_cap(mock):
    def endless(request: Any) -> tuple[int, dict[str, str], str]:
        return 200, {"x-ms-continuationtoken": "again"}, json.dumps({"count": 0, "value": []})

    mock.add_callback(responses.GET, ANY_ADO, callback=endless)
    with pytest.raises(AzureDevOpsError, match="more than 3 pages of 100 runs") as info:
        client().list_builds("mlops", 12, max_pages=3)
    assert info.value.exit_code == 3
    assert len(mock.calls) == 3


# -- 4. The service's message is masked before it is cut -------------------------------------
# Source: bridge/errors.py (no error prints a secret); a message cut at 300 characters first
# leaves the start of a secret that straddles the cut, which ``mask`` no longer recognises.


@pytest.mark.parametrize("start", [285, 290, 299])
def test_a_secret_straddling_the_cut_is_not_printed_in_part(mock, start):
    message = "x" * start + PAT + " tail" * 20  # the PAT covers position 300
    mock.add(responses.POST, RUNS_URL, status=400, json={"message": message})
    with pytest.raises(AzureDevOpsError) as info:
        run(client())
    detail = str(info.value).removeprefix("run pipeline 12 in mlops: HTTP 400: ")
    assert detail.startswith(("x" * start + "***" + " tail" * 20)[:300] + " (check")
