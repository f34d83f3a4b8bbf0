"""The job's own OIDC token (workload identity federation), for keyless AWS access.

``POST $(System.OidcRequestUri)?api-version=7.1-preview.1`` with ``Authorization: Bearer
$(System.AccessToken)`` returns ``{"oidcToken": "<jwt>"}``. Without ``serviceConnectionId`` the
token's subject is the pipeline (``p://{org}/{project}/{pipeline}``); with it, the service
connection (``sc://{org}/{project}/{connection}``). Tokens live about 10 minutes, so smbridge asks
for a fresh one at every AWS credential refresh.

A refusal says why in the service's own words (its ``message``, or the start of the body),
masked (the access token, and anything shaped like a token: a JWT, a ``Bearer`` value) before it
is cut to ``ERROR_BODY_LIMIT`` characters, on one line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from bridge.errors import CredentialsError, mask

OIDC_API_VERSION = "7.1-preview.1"
ERROR_BODY_LIMIT = 300  # characters of the service's answer kept in an error
# Without it a refused access token gets HTTP 203 and an HTML sign-in page, not a 401.
SUPPRESS_SIGN_IN = {"X-TFS-FedAuthRedirect": "Suppress"}
# Tokens an error body may carry besides our access token: a JWT (an OIDC token, an Entra access
# token) or an Authorization value echoed back.
_TOKEN_SHAPES = (
    re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"),
    re.compile(r"(?i)(?<=bearer )[A-Za-z0-9._~+/=-]{16,}"),
)


def error_detail(response: requests.Response, secrets: list[str]) -> str:
    """What the service said about a refused request, fit for an error line: the JSON
    ``message`` (else the body's text), on one line, every secret and token-shaped part masked
    (first: a secret cut in two would no longer match), then cut. ``""`` for an empty body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        text = body["message"]
    else:
        text = response.text or ""
        if "<html" in text[:500].lower():
            return "an HTML sign-in page: the access token was refused"
    text = " ".join(text.split())
    found = [m.group() for shape in _TOKEN_SHAPES for m in shape.finditer(text)]
    text = mask(text, [*secrets, *found])
    if len(text) > ERROR_BODY_LIMIT:
        text = text[:ERROR_BODY_LIMIT] + "…"
    return text


def _http_session() -> requests.Session:
    # urllib3's Retry honours Retry-After on 429/503 and backs off on the other 5xx.
    retry = Retry(
        total=4,
        backoff_factor=1.0,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=frozenset({"POST"}),
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    session = requests.Session()
    session.mount("https://", HTTPAdapter(max_retries=retry))
    session.mount("http://", HTTPAdapter(max_retries=retry))
    return session


class AzureDevOpsOidcTokenSource:
    """Requests the current job's OIDC token; call it for a fresh token each time."""

    def __init__(
        self,
        request_uri: str,
        access_token: str,
        *,
        service_connection_id: str | None = None,
        session: requests.Session | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._request_uri = request_uri
        self._access_token = access_token
        self._service_connection_id = service_connection_id
        self._session = session or _http_session()
        self._timeout = timeout
        self.requests_made = 0

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str] | None = None, *, service_connection_id: str | None = None
    ) -> AzureDevOpsOidcTokenSource:
        env = os.environ if environ is None else environ
        request_uri = env.get("SYSTEM_OIDCREQUESTURI", "")
        access_token = env.get("SYSTEM_ACCESSTOKEN", "")
        if not request_uri:
            raise CredentialsError(
                "--web-identity: SYSTEM_OIDCREQUESTURI is not set; run inside an Azure Pipelines "
                "job (the agent sets it) or drop --web-identity"
            )
        if not access_token:
            raise CredentialsError(
                "--web-identity: SYSTEM_ACCESSTOKEN is not set; add "
                "'env: { SYSTEM_ACCESSTOKEN: $(System.AccessToken) }' to the step"
            )
        return cls(request_uri, access_token, service_connection_id=service_connection_id)

    @property
    def access_token(self) -> str:
        return self._access_token

    def __call__(self) -> str:
        params = {"api-version": OIDC_API_VERSION}
        if self._service_connection_id:
            params["serviceConnectionId"] = self._service_connection_id
        self.requests_made += 1
        try:
            response = self._session.post(
                self._request_uri,
                params=params,
                headers={"Authorization": f"Bearer {self._access_token}", **SUPPRESS_SIGN_IN},
                json={},
                timeout=self._timeout,
            )
        except requests.RequestException as exc:
            raise CredentialsError(
                f"requesting the job's OIDC token failed: {type(exc).__name__}"
            ) from None
        if response.status_code != 200:
            detail = error_detail(response, [self._access_token])
            said = f" ({detail})" if detail else ""
            raise CredentialsError(
                f"requesting the job's OIDC token failed: HTTP {response.status_code}{said}; "
                "check that the job may use System.AccessToken and, with a service connection "
                "id, that the pipeline is authorised to use that connection"
            )
        try:
            token = response.json()["oidcToken"]
        except (ValueError, KeyError, TypeError):
            raise CredentialsError("the OIDC token response has no 'oidcToken' field") from None
        if not isinstance(token, str) or not token:
            raise CredentialsError("the OIDC token response has an empty 'oidcToken'")
        return token
