"""Azure DevOps credentials: a PAT, or an Entra ID service principal's secret exchanged for a
token for the Azure DevOps resource. Read once per process (Lambda container), cached, refreshed
on demand (after a 401). The secret value never appears in ``repr``, logs or errors.

For the CLI: :func:`credential_from_environ` picks the job's ``System.AccessToken`` on an agent
(``SYSTEM_ACCESSTOKEN``, sent as ``Bearer``), else a PAT from ``SMBRIDGE_ADO_PAT`` or
``AZURE_DEVOPS_EXT_PAT`` (the variable the az devops CLI reads).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import requests

from bridge.errors import CredentialsError, shown_key

AZURE_DEVOPS_RESOURCE = "499b84ac-1321-427f-aa17-267ca6975798"
ENTRA_TOKEN_URL = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"

# RFC 6750 section 2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# OAuth 2.0 error codes (RFC 6749 section 5.2: "invalid_client", ...; Entra ID's are the same).
_OAUTH_ERROR = re.compile(r"[a-z_]{1,64}")


def _error_code(body: Mapping[str, Any]) -> str:
    """`` <error>`` of an OAuth error answer when it is an error code, else nothing: a proxy or
    a broken service may put anything there, the request's client secret included."""
    code = body.get("error")
    return f" {code}" if isinstance(code, str) and _OAUTH_ERROR.fullmatch(code) else ""


class AzureDevOpsCredential(Protocol):
    """Produces an ``Authorization`` header; ``invalidate()`` forces a fresh one next time."""

    def authorization(self) -> str: ...

    def invalidate(self) -> None: ...

    def secrets(self) -> list[str]: ...


@dataclass(frozen=True, repr=False)
class _ServicePrincipal:
    tenant_id: str
    client_id: str
    client_secret: str


def basic_credentials(pat: str) -> str:
    """The ``Basic`` credentials of a PAT: base64 of ``:<pat>`` (any user name works)."""
    return base64.b64encode(f":{pat}".encode()).decode()


def parse_secret(value: str, *, source: str) -> str | _ServicePrincipal:
    """A PAT (plain string or ``{"pat": …}``) or ``{"tenantId", "clientId", "clientSecret"}``."""
    text = value.strip()
    if not text:
        raise CredentialsError(f"{source}: the secret is empty")
    if not text.startswith("{"):
        return text
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        raise CredentialsError(f"{source}: the secret looks like JSON but is not valid") from None
    if isinstance(document, dict) and isinstance(document.get("pat"), str) and document["pat"]:
        return document["pat"]
    keys = ("tenantId", "clientId", "clientSecret")
    if isinstance(document, dict) and all(isinstance(document.get(k), str) for k in keys):
        return _ServicePrincipal(*(document[k] for k in keys))
    # A key may be the credential itself (a key/value secret with the PAT typed as the key):
    # keys are named as errors name them, a secret-shaped one described, not shown.
    keys = ", ".join(shown_key(k) for k in sorted(document)) if isinstance(document, dict) else ""
    raise CredentialsError(
        f'{source}: expected a PAT, {{"pat": …}} or '
        f'{{"tenantId", "clientId", "clientSecret"}} (keys found: {keys or "none"})'
    )


class SecretCredential:
    """The credential held in one secret; ``load`` returns the secret's current value."""

    def __init__(
        self,
        load: Callable[[], str],
        *,
        source: str,
        http: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._load = load
        self._source = source
        self._http = http or requests.Session()
        self._clock = clock
        self._lock = threading.Lock()
        self._material: str | _ServicePrincipal | None = None
        self._header: str | None = None
        self._expires_at = 0.0
        self.secret_reads = 0
        self.token_requests = 0
        self._known_secrets: list[str] = []

    def __repr__(self) -> str:
        return f"SecretCredential(source={self._source!r})"

    def secrets(self) -> list[str]:
        return list(self._known_secrets)

    def invalidate(self) -> None:
        with self._lock:
            self._material = None
            self._header = None

    def authorization(self) -> str:
        with self._lock:
            if self._header and self._clock() < self._expires_at:
                return self._header
            if self._material is None:
                self.secret_reads += 1
                self._material = parse_secret(self._load(), source=self._source)
            if isinstance(self._material, str):
                self._remember(self._material)
                basic = basic_credentials(self._material)
                self._header, self._expires_at = f"Basic {basic}", float("inf")
                self._remember(basic)
            else:
                self._remember(self._material.client_secret)
                token, lifetime = self._entra_token(self._material)
                self._remember(token)
                self._header = f"Bearer {token}"
                self._expires_at = self._clock() + max(60.0, lifetime - 300.0)
            return self._header

    def _remember(self, value: str) -> None:
        if value not in self._known_secrets:
            self._known_secrets.append(value)

    def _entra_token(self, principal: _ServicePrincipal) -> tuple[str, float]:
        self.token_requests += 1
        try:
            response = self._http.post(
                ENTRA_TOKEN_URL.format(tenant=principal.tenant_id),
                data={
                    "grant_type": "client_credentials",
                    "client_id": principal.client_id,
                    "client_secret": principal.client_secret,
                    "scope": f"{AZURE_DEVOPS_RESOURCE}/.default",
                },
                timeout=15,
            )
        except requests.RequestException as exc:
            raise CredentialsError(
                f"{self._source}: Entra ID token request failed ({type(exc).__name__})"
            ) from None
        body: Any = {}
        with contextlib.suppress(ValueError):
            body = response.json()
        if not isinstance(body, dict):
            body = {}
        token = body.get("access_token")
        if response.status_code != 200 or not isinstance(token, str):
            raise CredentialsError(
                f"{self._source}: Entra ID refused the service principal "
                f"(HTTP {response.status_code}{_error_code(body)}); check "
                "tenantId/clientId/clientSecret"
            )
        if not BEARER_TOKEN.fullmatch(token):
            # requests would refuse the header and quote it in its error
            raise CredentialsError(
                f"{self._source}: Entra ID answered an access token that is not a bearer token "
                "(characters outside RFC 6750's b64token; not shown)"
            )
        try:
            lifetime = float(body.get("expires_in", 3600))
        except (TypeError, ValueError):
            lifetime = 3600.0
        return token, lifetime


def secrets_manager_loader(client: Any, secret_id: str) -> Callable[[], str]:
    """Reads the secret's current value (each call is one GetSecretValue)."""

    def load() -> str:
        try:
            response = client.get_secret_value(SecretId=secret_id)
        except Exception as exc:  # botocore errors carry no secret material
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
            raise CredentialsError(f"reading secret {secret_id} failed: {code}") from None
        if "SecretString" not in response:
            raise CredentialsError(f"secret {secret_id} has no SecretString")
        return response["SecretString"]

    return load


# Where the CLI looks for an Azure DevOps credential, first match wins.
ENVIRONMENT_CREDENTIALS = ("SYSTEM_ACCESSTOKEN", "SMBRIDGE_ADO_PAT", "AZURE_DEVOPS_EXT_PAT")


class BearerTokenCredential:
    """An OAuth access token, e.g. the job's ``System.AccessToken``: ``Authorization: Bearer …``.

    ``token`` is the value or a function returning the current value (called again after
    ``invalidate()``, i.e. after a 401). The token never appears in ``repr``.
    """

    def __init__(self, token: str | Callable[[], str], *, source: str = "SYSTEM_ACCESSTOKEN"):
        self._load = token if callable(token) else (lambda: token)
        self._source = source
        self._token: str | None = None
        # A token given as a value is masked from the start, before the first request.
        self._known: list[str] = [token.strip()] if isinstance(token, str) and token.strip() else []

    def __repr__(self) -> str:
        return f"BearerTokenCredential(source={self._source!r})"

    def authorization(self) -> str:
        if self._token is None:
            token = self._load().strip()
            if not token:
                raise CredentialsError(f"{self._source}: the token is empty")
            if token not in self._known:
                self._known.append(token)
            if not BEARER_TOKEN.fullmatch(token):
                # requests would refuse the header and quote it whole in its error
                raise CredentialsError(
                    f"{self._source}: the token holds a space, a line break or another "
                    "character a bearer token cannot (RFC 6750); not shown"
                )
            self._token = token
        return f"Bearer {self._token}"

    def invalidate(self) -> None:
        self._token = None

    def secrets(self) -> list[str]:
        return list(self._known)


class PatCredential:
    """A personal access token sent as ``Authorization: Basic base64(":" + pat)``."""

    def __init__(self, pat: str, *, source: str) -> None:
        pat = pat.strip()
        if not pat:
            raise CredentialsError(f"{source}: the PAT is empty")
        self._source = source
        self._pat = pat
        self._basic = basic_credentials(pat)

    def __repr__(self) -> str:
        return f"PatCredential(source={self._source!r})"

    def authorization(self) -> str:
        return f"Basic {self._basic}"

    def invalidate(self) -> None:
        """Nothing to refresh: a PAT from the environment is what it is."""

    def secrets(self) -> list[str]:
        return [self._pat, self._basic]


def credential_from_environ(
    environ: Mapping[str, str] | None = None,
) -> BearerTokenCredential | PatCredential:
    """``SYSTEM_ACCESSTOKEN`` (Bearer), else ``SMBRIDGE_ADO_PAT``, else ``AZURE_DEVOPS_EXT_PAT``.

    Raises :class:`CredentialsError` (one line, exit code 6) when none is set. Register
    ``credential.secrets()`` with the reporter so they are masked in any output.
    """
    env = os.environ if environ is None else environ
    token = env.get("SYSTEM_ACCESSTOKEN", "").strip()
    if token:
        return BearerTokenCredential(token, source="SYSTEM_ACCESSTOKEN")
    for name in ENVIRONMENT_CREDENTIALS[1:]:
        value = env.get(name, "").strip()
        if value:
            return PatCredential(value, source=name)
    raise CredentialsError(
        "no Azure DevOps credential: set SMBRIDGE_ADO_PAT (or AZURE_DEVOPS_EXT_PAT) to a PAT, "
        "or on an agent map it into the step: env: SYSTEM_ACCESSTOKEN: $(System.AccessToken)"
    )
