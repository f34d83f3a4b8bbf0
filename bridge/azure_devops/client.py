"""One client for the Azure DevOps REST calls the bridge makes, on ``requests``.

Why not the official ``azure-devops`` package: its clients resolve every area with an extra
location-discovery round trip on first use (one more request per Lambda cold start), and it has
no client for YAML pipeline approvals. Each method here is exactly one HTTP request (plus one
retry after a 401 with a refreshed credential); the caller decides on retries, because whether a
failed ``POST …/runs`` may be retried depends on whether a run might already exist.

The one exception is :meth:`AzureDevOpsClient.send` for a GET (reading is safe to repeat): after
a 429, a 5xx, a time-out or a broken connection it tries again up to ``get_retries`` times,
waiting ``Retry-After`` (or 1, 2, 4 … s) but never longer than ``max_retry_wait`` per wait (a
longer ``Retry-After`` fails at once). Writes sent through ``send`` are never retried, except
once after a 401 like every request. ``sleep`` is injectable so tests do not wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import requests

from bridge import __version__
from bridge.azure_devops.credentials import AzureDevOpsCredential
from bridge.errors import ServiceError, UserError

API_VERSION = "7.1"
DEFAULT_TIMEOUT = (5.0, 20.0)  # connect, read
GET_RETRIES = 3  # extra attempts of a GET sent through ``send`` after 429/5xx/time-out
MAX_RETRY_WAIT = 60.0  # seconds; a longer Retry-After fails at once instead of blocking


class AzureDevOpsError(ServiceError):
    """A failed Azure DevOps call. ``retryable``: another attempt may succeed; ``maybe_processed``:
    the service may have acted on the request (time-outs, 5xx), so check before repeating it."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        maybe_processed: bool = False,
        retry_after: float | None = None,
        rate_limit: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.maybe_processed = maybe_processed
        self.retry_after = retry_after
        self.rate_limit = dict(rate_limit or {})


@dataclass(frozen=True)
class PipelineRun:
    id: int
    name: str
    state: str
    web_url: str
    template_parameters: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BuildSummary:
    id: int
    build_number: str
    status: str
    result: str
    queue_time: str
    web_url: str
    template_parameters: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ApiRequest:
    """One Azure DevOps REST request, described before it is sent (a dry run prints it).

    ``path`` is relative to the organization URL; ``what`` names the operation in errors;
    ``hints`` (HTTP status → advice) replace the pipeline-specific advice of ``run_pipeline``.
    """

    method: str
    path: str
    api_version: str
    what: str
    params: Mapping[str, Any] = field(default_factory=dict)
    body: Any = None
    hints: Mapping[int, str] = field(default_factory=dict)

    def url(self, base_url: str) -> str:
        """The exact URL ``requests`` sends (query encoded the same way)."""
        query = {**self.params, "api-version": self.api_version}
        url = f"{base_url}/{self.path.lstrip('/')}"
        return str(requests.Request(self.method, url, params=query).prepare().url)

    def as_dict(self, base_url: str) -> dict[str, Any]:
        return {"method": self.method, "url": self.url(base_url), "body": self.body}


def organization_url(organization: str) -> str:
    """``contoso`` or ``https://dev.azure.com/contoso/`` → ``https://dev.azure.com/contoso``.

    Plain ``http://`` would send the credential in clear text: refused, except on loopback.
    """
    organization = organization.strip().rstrip("/")
    if organization.startswith("http://"):
        host = organization[len("http://") :].split("/", 1)[0].split(":", 1)[0]
        if host not in ("localhost", "127.0.0.1", "[::1]"):
            raise UserError(
                f"organization {organization!r}: use https:// (the credential would travel "
                "in clear text)"
            )
        return organization
    if organization.startswith("https://"):
        return organization
    return f"https://dev.azure.com/{quote(organization, safe='')}"


def collection(data: Any) -> list[Any]:
    """The items of a list response: ``{"count": n, "value": [...]}`` on the wire, or a list."""
    if isinstance(data, dict):
        data = data.get("value", [])
    return list(data) if isinstance(data, list) else []


def response_json(response: requests.Response, what: str) -> Any:
    """The JSON body of a successful response (``None`` if empty), or one clear error."""
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        # e.g. HTTP 203 with a sign-in page: the credential was not accepted
        raise AzureDevOpsError(
            f"{what}: HTTP {response.status_code} without a JSON body "
            "(a sign-in page usually means the credential was not accepted)",
            status=response.status_code,
        ) from None


def rate_limit_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower().startswith("x-ratelimit-")}


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds or HTTP date) or ``X-RateLimit-Reset``."""
    value = headers.get("Retry-After")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                when = parsedate_to_datetime(value).timestamp()
                return max(0.0, when - (now or time.time()))
            except (TypeError, ValueError):
                pass
    reset = headers.get("X-RateLimit-Reset")
    if reset:
        try:
            return max(0.0, float(reset) - (now or time.time()))
        except ValueError:
            return None
    return None


def _service_message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    if isinstance(body, dict):
        return str(body.get("message") or body.get("typeKey") or "")[:300]
    return ""


class AzureDevOpsClient:
    """Azure DevOps REST for one organization."""

    def __init__(
        self,
        organization: str,
        credential: AzureDevOpsCredential,
        *,
        http: requests.Session | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        sleep: Callable[[float], None] = time.sleep,
        get_retries: int = GET_RETRIES,
        max_retry_wait: float = MAX_RETRY_WAIT,
    ) -> None:
        self.base_url = organization_url(organization)
        self._credential = credential
        self._http = http or requests.Session()
        self._timeout = timeout
        self._sleep = sleep
        self._get_retries = max(0, get_retries)
        self._max_retry_wait = max_retry_wait
        self.requests_made = 0

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        what: str,
        api_version: str = API_VERSION,
        hints: Mapping[int, str] | None = None,
    ) -> requests.Response:
        url = f"{self.base_url}/{path.lstrip('/')}"
        query = {**(params or {}), "api-version": api_version}
        for attempt in (1, 2):
            headers = {
                "Authorization": self._credential.authorization(),
                "Accept": "application/json",
                "User-Agent": f"smbridge/{__version__}",
            }
            self.requests_made += 1
            try:
                response = self._http.request(
                    method, url, params=query, json=body, headers=headers, timeout=self._timeout
                )
            except requests.Timeout:
                raise AzureDevOpsError(
                    f"{what}: timed out", retryable=True, maybe_processed=True
                ) from None
            except requests.ConnectionError:
                # The request may have been sent before the connection broke.
                raise AzureDevOpsError(
                    f"{what}: connection failed", retryable=True, maybe_processed=True
                ) from None
            if response.status_code == 401 and attempt == 1:
                self._credential.invalidate()  # rotated PAT or expired token: read it again
                continue
            return self._check(response, what, hints)
        raise AssertionError("unreachable")

    def _redact(self, text: str) -> str:
        """The service's own words may echo what it was sent: never the credential."""
        secrets = getattr(self._credential, "secrets", lambda: [])()
        for secret in sorted(secrets, key=len, reverse=True):
            if secret:
                text = text.replace(secret, "***")
        return text

    def _check(
        self, response: requests.Response, what: str, hints: Mapping[int, str] | None = None
    ) -> requests.Response:
        status = response.status_code
        if status < 300:
            return response
        limits = rate_limit_headers(response.headers)
        detail = self._redact(_service_message(response))
        suffix = f": {detail}" if detail else ""
        if status == 429:
            raise AzureDevOpsError(
                f"{what}: HTTP 429 throttled{suffix}",
                status=status,
                retryable=True,
                retry_after=retry_after_seconds(response.headers),
                rate_limit=limits,
            )
        if status >= 500:
            raise AzureDevOpsError(
                f"{what}: HTTP {status}{suffix}",
                status=status,
                retryable=True,
                maybe_processed=True,
                retry_after=retry_after_seconds(response.headers),
                rate_limit=limits,
            )
        if hints is None:
            hints = {
                400: "check the pipeline id and that the YAML declares every template parameter",
                401: "the credential was refused; check the PAT or service principal in the secret",
                403: "the identity lacks 'Queue builds' permission on the pipeline",
                404: "check organization, project and pipeline id",
            }
        hint = hints.get(status, "")
        hint_text = f" ({hint})" if hint else ""
        raise AzureDevOpsError(f"{what}: HTTP {status}{suffix}{hint_text}", status=status)

    # -- Any operation -------------------------------------------------------------------------

    def url_for(self, request: ApiRequest) -> str:
        return request.url(self.base_url)

    def send(self, request: ApiRequest) -> requests.Response:
        """Send ``request`` with its own api-version: one HTTP request (plus one retry after a
        401). A GET is also retried after 429/5xx/time-out/connection failure, bounded (see the
        module docstring); any other method fails at once with :class:`AzureDevOpsError`."""
        retries = self._get_retries if request.method.upper() == "GET" else 0
        for attempt in range(retries + 1):
            try:
                return self._request(
                    request.method,
                    request.path,
                    params=dict(request.params),
                    body=request.body,
                    what=request.what,
                    api_version=request.api_version,
                    hints=request.hints,
                )
            except AzureDevOpsError as exc:
                if not exc.retryable or attempt == retries:
                    raise
                wait = exc.retry_after if exc.retry_after is not None else float(2**attempt)
                if wait > self._max_retry_wait:
                    raise
                self._sleep(wait)
        raise AssertionError("unreachable")

    def send_json(self, request: ApiRequest) -> Any:
        """:meth:`send`, then the JSON body (``None`` for an empty one)."""
        return response_json(self.send(request), request.what)

    # -- Pipelines ----------------------------------------------------------------------------

    def run_pipeline(
        self,
        project: str,
        pipeline_id: int,
        *,
        template_parameters: Mapping[str, str],
        ref_name: str | None = None,
    ) -> PipelineRun:
        """``Runs - Run Pipeline``: one ``POST …/_apis/pipelines/{id}/runs``."""
        body: dict[str, Any] = {"templateParameters": dict(template_parameters)}
        if ref_name:
            body["resources"] = {"repositories": {"self": {"refName": ref_name}}}
        response = self._request(
            "POST",
            f"{quote(project, safe='')}/_apis/pipelines/{int(pipeline_id)}/runs",
            body=body,
            what=f"run pipeline {pipeline_id} in {project}",
        )
        data = response.json()
        return PipelineRun(
            id=int(data["id"]),
            name=str(data.get("name", "")),
            state=str(data.get("state", "")),
            web_url=str(data.get("_links", {}).get("web", {}).get("href", "")),
            template_parameters=dict(data.get("templateParameters") or {}),
        )

    # -- Builds -------------------------------------------------------------------------------

    def list_builds(
        self,
        project: str,
        definition_id: int,
        *,
        min_time: datetime | None = None,
        top: int = 100,
    ) -> list[BuildSummary]:
        """``Builds - List`` for one pipeline definition, newest first. Unlike ``Runs - List`` it
        returns each run's ``templateParameters``: the way to find a run for a model package."""
        params: dict[str, Any] = {
            "definitions": str(int(definition_id)),
            "queryOrder": "queueTimeDescending",
            "$top": top,
        }
        if min_time is not None:
            params["minTime"] = min_time.isoformat().replace("+00:00", "Z")
        response = self._request(
            "GET",
            f"{quote(project, safe='')}/_apis/build/builds",
            params=params,
            what=f"list runs of pipeline {definition_id} in {project}",
        )
        data = response.json()
        items = data.get("value", []) if isinstance(data, dict) else data
        return [
            BuildSummary(
                id=int(item["id"]),
                build_number=str(item.get("buildNumber", "")),
                status=str(item.get("status", "")),
                result=str(item.get("result", "") or ""),
                queue_time=str(item.get("queueTime", "")),
                web_url=str(item.get("_links", {}).get("web", {}).get("href", "")),
                template_parameters=dict(item.get("templateParameters") or {}),
            )
            for item in items
        ]
