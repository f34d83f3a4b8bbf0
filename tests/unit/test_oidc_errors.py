"""A refused OIDC token request says why, without ever showing a token (issue 8 item 18).

Source: the OIDC token endpoint (``POST $(System.OidcRequestUri)?api-version=7.1-preview.1``;
Microsoft docs, predefined variables) answers a refusal with Azure DevOps' usual error body,
``{"$id", "innerException", "message", "typeName", "typeKey", "errorCode", "eventId"}``, whose
``message`` says what is wrong (e.g. a service connection the pipeline may not use); a refused
access token gets HTTP 203 and an HTML sign-in page unless the request carries
``X-TFS-FedAuthRedirect: Suppress``. The error shows that message masked (bridge.errors.mask:
System.AccessToken and anything shaped like a token), cut after masking, on one line.
"""

from __future__ import annotations

import json

import pytest
import responses

from bridge.azure_devops.oidc import ERROR_BODY_LIMIT, AzureDevOpsOidcTokenSource
from bridge.errors import CredentialsError

URI = "https://dev.azure.com/contoso/p1/_apis/distributedtask/hubs/build/plans/1/jobs/2/oidctoken"
ACCESS_TOKEN = "SYSTEM-ACCESS-TOKEN-SENTINEL-4b1e9f07a2"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJwOi8vY29udG9zbyJ9.c2lnbmF0dXJlLXNlbnRpbmVs"


def error_body(message: str) -> str:
    return json.dumps(
        {
            "$id": "1",
            "innerException": None,
            "message": message,
            "typeName": "Microsoft.TeamFoundation.DistributedTask.WebApi.TaskOrchestrationPlan"
            "SecurityException, Microsoft.TeamFoundation.DistributedTask.WebApi",
            "typeKey": "TaskOrchestrationPlanSecurityException",
            "errorCode": 0,
            "eventId": 3000,
        }
    )


def refusal(status: int, body: str, content_type: str = "application/json") -> str:
    responses.post(URI, status=status, body=body, content_type=content_type)
    with pytest.raises(CredentialsError) as caught:
        AzureDevOpsOidcTokenSource(URI, ACCESS_TOKEN, service_connection_id="sc1")()
    message = str(caught.value)
    assert "\n" not in message
    assert ACCESS_TOKEN not in message
    return message


@responses.activate
def test_the_services_message_is_in_the_error():
    message = refusal(
        400, error_body("Service connection sc1 is not authorized for pipeline model-deploy.")
    )
    assert message.startswith(
        "requesting the job's OIDC token failed: HTTP 400 (Service connection sc1 is not "
        "authorized for pipeline model-deploy.); check that the job may use System.AccessToken"
    )


@responses.activate
def test_the_access_token_and_any_token_in_the_body_are_masked():
    message = refusal(
        401,
        error_body(
            f"Access denied for {ACCESS_TOKEN}: header was Bearer {ACCESS_TOKEN}; "
            f"previous token {JWT} expired"
        ),
    )
    assert "Access denied for ***: header was Bearer ***; previous token *** expired" in message
    for part in (JWT, *JWT.split(".")):
        assert part not in message


@responses.activate
def test_a_token_across_the_cut_leaves_no_part_behind():
    """Masked first, then cut: cut first, the token's start would no longer match and show."""
    padding = "x" * (ERROR_BODY_LIMIT - 10)
    message = refusal(403, error_body(f"{padding} {ACCESS_TOKEN} and more"))
    assert ACCESS_TOKEN[:10] not in message
    assert f"{padding} ***" in message


@responses.activate
def test_a_long_body_is_bounded_and_one_line():
    body = "\n".join(f"line {n}: something went wrong" for n in range(2000))
    message = refusal(500, body, content_type="text/plain")
    assert "line 0: something went wrong line 1:" in message
    assert len(message) < ERROR_BODY_LIMIT + 250


@responses.activate
def test_a_sign_in_page_is_named_not_printed():
    page = "<!DOCTYPE html><html><head><title>Azure DevOps Services | Sign In</title></head></html>"
    message = refusal(203, page, content_type="text/html")
    assert "HTTP 203 (an HTML sign-in page: the access token was refused); check" in message
    assert "<html" not in message
    (call,) = responses.calls
    assert call.request.headers["X-TFS-FedAuthRedirect"] == "Suppress"


@responses.activate
def test_an_empty_body_adds_nothing():
    message = refusal(404, "", content_type="text/plain")
    assert message.startswith("requesting the job's OIDC token failed: HTTP 404; check that")
