"""The reads the doctor needs that no other module offers yet, each one GET (or local):

* ``Pipelines - Get`` (reference/ado-openapi-pipelines-7.1-pipelines.json): whether a route's
  target exists, and its ``configuration`` (``type``, ``path`` of the YAML; the service returns
  ``path`` and ``repository`` for a YAML pipeline, though the spec's ``PipelineConfiguration``
  declares only ``type``).
* ``Endpoints - Get`` (service connections;
  reference/ado-openapi-serviceEndpoint-7.1-endpoints.json):
  ``GET {organization}/{project}/_apis/serviceendpoint/endpoints/{endpointId}`` answering a
  ``ServiceEndpoint`` (``id``, ``name``, ``type``, ``authorization.scheme``, ``isReady``; a
  workload identity federation connection's ``authorization.parameters`` carry its
  ``workloadIdentityFederationSubject``); an unknown id gets an empty answer
  (MicrosoftDocs/vsts-rest-api-specs#285), or a 404.
* a pipeline YAML's declared ``parameters`` (read locally);
* an OIDC token's claims (the payload decoded, never the signature, never verified: AWS verifies
  it) and the IAM trust policy statement that accepts it.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import yaml

from bridge.azure_devops.client import (
    API_VERSION,
    ApiRequest,
    AzureDevOpsClient,
    AzureDevOpsError,
    json_object,
    organization_url,
    response_json,
)
from bridge.errors import UserError

SERVICE_ENDPOINTS_API_VERSION = "7.1"
WORKLOAD_IDENTITY_SCHEME = "WorkloadIdentityFederation"
DEFAULT_AUDIENCE = "api://AzureADTokenExchange"


# -- Azure DevOps ---------------------------------------------------------------------------------


def get_pipeline_request(project: str, pipeline_id: int) -> ApiRequest:
    """``Pipelines - Get``: ``GET {project}/_apis/pipelines/{pipelineId}``."""
    return ApiRequest(
        "GET",
        f"{quote(project, safe='')}/_apis/pipelines/{int(pipeline_id)}",
        API_VERSION,
        f"Pipelines - Get {pipeline_id} in {project}",
        hints={
            401: "the credential was refused; check the PAT or System.AccessToken",
            403: "the identity may not read pipelines of this project",
        },
    )


def _send_unless_missing(client: AzureDevOpsClient, request: ApiRequest) -> Any:
    """The response, or ``None`` when the service answers 404."""
    try:
        return client.send(request)
    except AzureDevOpsError as exc:
        if exc.status == 404:
            return None
        raise


def get_pipeline(
    client: AzureDevOpsClient, project: str, pipeline_id: int
) -> dict[str, Any] | None:
    """The pipeline, or ``None`` when the service answers 404."""
    request = get_pipeline_request(project, pipeline_id)
    response = _send_unless_missing(client, request)
    if response is None:
        return None
    return json_object(response_json(response, request.what), f"{request.what}: HTTP 200")


def get_service_endpoint_request(project: str, endpoint_id: str) -> ApiRequest:
    """``Endpoints - Get``: ``GET {project}/_apis/serviceendpoint/endpoints/{endpointId}``
    (reference/ado-openapi-serviceEndpoint-7.1-endpoints.json)."""
    return ApiRequest(
        "GET",
        f"{quote(project, safe='')}/_apis/serviceendpoint/endpoints/{quote(endpoint_id, safe='')}",
        SERVICE_ENDPOINTS_API_VERSION,
        f"Service Endpoints - Get {endpoint_id} in {project}",
        hints={403: "the identity may not read this project's service connections"},
    )


def get_service_endpoint(
    client: AzureDevOpsClient, project: str, endpoint_id: str
) -> dict[str, Any] | None:
    """The service connection, or ``None`` (an empty answer, ``null`` or 404)."""
    request = get_service_endpoint_request(project, endpoint_id)
    response = _send_unless_missing(client, request)
    if response is None:
        return None
    data = response_json(response, request.what)
    if data is None:
        return None
    return json_object(data, f"{request.what}: HTTP {response.status_code}")


def organization_name(organization: str) -> str:
    """The organization's name as tokens and subjects name it (``sc://{name}/…``), from the
    configured value: ``contoso``, ``https://dev.azure.com/contoso``, the sandbox's
    ``http://127.0.0.1:PORT/contoso`` or ``https://contoso.visualstudio.com`` → ``contoso``."""
    parts = urlsplit(organization_url(organization))
    path = parts.path.strip("/")
    if path:
        return unquote(path.split("/", 1)[0])
    return (parts.hostname or "").split(".", 1)[0]


def endpoint_subject(endpoint: dict[str, Any], organization: str, project: str) -> str:
    """The subject of the OIDC tokens a workload identity federation connection issues: the
    one the connection states (``authorization.parameters.workloadIdentityFederationSubject``;
    with the Entra issuer it holds ids, not names), else ``sc://{organization}/{project}/{name}``
    (the Azure DevOps issuer's form)."""
    parameters = (endpoint.get("authorization") or {}).get("parameters") or {}
    stated = (
        parameters.get("workloadIdentityFederationSubject")
        if isinstance(parameters, dict)
        else None
    )
    if isinstance(stated, str) and stated:
        return stated
    return f"sc://{organization_name(organization)}/{project}/{endpoint.get('name', '')}"


# -- pipeline YAML --------------------------------------------------------------------------------


def declared_parameters(path: Path) -> list[str]:
    """The names of the runtime parameters a pipeline YAML declares (``parameters:`` as a list of
    ``{name: …}``, or the older mapping form); a one-line UserError for an unreadable file."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read ({type(exc).__name__})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise UserError(f"{path}: not valid YAML{where}") from None
    if not isinstance(document, dict):
        raise UserError(f"{path}: not a pipeline (no mapping at the top level)")
    parameters = document.get("parameters") or []
    if isinstance(parameters, dict):
        return [str(name) for name in parameters]
    if not isinstance(parameters, list):
        raise UserError(f"{path}: parameters is not a list")
    names = []
    for n, item in enumerate(parameters, 1):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise UserError(f"{path}: parameters item {n} has no name")
        names.append(item["name"])
    return names


# -- OIDC token -----------------------------------------------------------------------------------


def token_claims(token: str) -> dict[str, Any]:
    """The claims (payload) of a JWT; neither header nor signature is looked at. A UserError that
    quotes no part of the token if it is not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        raise UserError(f"the OIDC token is not a JWT ({len(parts)} dot-separated parts, not 3)")
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError):
        raise UserError("the OIDC token's payload is not base64url-encoded JSON") from None
    if not isinstance(claims, dict):
        raise UserError("the OIDC token's payload is not a JSON object")
    return claims


def audiences(claims: dict[str, Any]) -> list[str]:
    aud = claims.get("aud")
    if isinstance(aud, str):
        return [aud]
    if isinstance(aud, list):
        return [str(a) for a in aud]
    return []


def trust_statement(
    issuer: str, subject: str, audience: str, *, account: str, partition: str = "aws"
) -> dict[str, Any]:
    """The IAM role trust policy statement that accepts this token through the account's OIDC
    provider for ``issuer`` (condition keys are the issuer without ``https://``, as in
    infra/automation-account.yaml)."""
    host_path = issuer.removeprefix("https://").rstrip("/")
    return {
        "Effect": "Allow",
        "Principal": {"Federated": f"arn:{partition}:iam::{account}:oidc-provider/{host_path}"},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {f"{host_path}:aud": audience, f"{host_path}:sub": subject}},
    }
