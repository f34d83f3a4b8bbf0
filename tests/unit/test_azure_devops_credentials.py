"""Azure DevOps credentials from a secret: PAT or Entra ID service principal."""

from __future__ import annotations

import base64
import json

import pytest
import responses

from bridge.azure_devops.credentials import AZURE_DEVOPS_RESOURCE, SecretCredential
from bridge.errors import CredentialsError

TOKEN_URL = "https://login.microsoftonline.com/tenant-1/oauth2/v2.0/token"
SP_SECRET = json.dumps({"tenantId": "tenant-1", "clientId": "app-1", "clientSecret": "SP-SECRET-9"})


@pytest.mark.parametrize("value", ["my-pat", '{"pat": "my-pat"}', "  my-pat\n"])
def test_pat_forms_give_basic_auth(value):
    credential = SecretCredential(lambda: value, source="test")
    expected = base64.b64encode(b":my-pat").decode()
    assert credential.authorization() == f"Basic {expected}"


@responses.activate
def test_service_principal_token_is_requested_for_azure_devops_and_cached():
    responses.post(TOKEN_URL, json={"access_token": "ENTRA-TOKEN", "expires_in": 3600})
    now = [1000.0]
    credential = SecretCredential(lambda: SP_SECRET, source="test", clock=lambda: now[0])
    assert credential.authorization() == "Bearer ENTRA-TOKEN"
    assert credential.authorization() == "Bearer ENTRA-TOKEN"
    assert credential.token_requests == 1
    form = dict(pair.split("=", 1) for pair in responses.calls[0].request.body.split("&"))
    assert form["grant_type"] == "client_credentials"
    assert form["scope"] == f"{AZURE_DEVOPS_RESOURCE}%2F.default"
    now[0] += 3600 - 200  # within 5 minutes of expiry: a new token
    credential.authorization()
    assert credential.token_requests == 2


@responses.activate
def test_invalidate_rereads_the_secret():
    values = iter(["first-pat", "second-pat"])
    credential = SecretCredential(lambda: next(values), source="test")
    first = credential.authorization()
    credential.invalidate()
    assert credential.authorization() != first
    assert credential.secret_reads == 2


@responses.activate
def test_refused_service_principal_is_one_secret_free_line():
    responses.post(TOKEN_URL, status=401, json={"error": "invalid_client"})
    credential = SecretCredential(lambda: SP_SECRET, source="secret arn:x")
    with pytest.raises(CredentialsError) as info:
        credential.authorization()
    message = str(info.value)
    assert "HTTP 401 invalid_client" in message
    assert "SP-SECRET-9" not in message + repr(credential)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "the secret is empty"),
        ("{broken", "not valid"),
        ('{"tenantId": "t"}', "keys found: tenantId"),
    ],
)
def test_bad_secret_shapes(value, message):
    with pytest.raises(CredentialsError, match=message):
        SecretCredential(lambda: value, source="test").authorization()
