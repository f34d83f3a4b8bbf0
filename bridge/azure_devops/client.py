"""One client for the Azure DevOps REST calls the bridge makes, on ``requests``.

Why not the official ``azure-devops`` package: its clients resolve every area with an extra
location-discovery round trip on first use (one more request per Lambda cold start), and it has
no client for YAML pipeline approvals. Each method here is exactly one HTTP request (plus one
retry after a 401 with a refreshed credential); the caller decides on retries, because whether a
failed ``POST …/runs`` may be retried depends on whether a run might already exist.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import requests

from bridge import __version__
from bridge.azure_devops.credentials import AzureDevOpsCredential
from bridge.errors import ServiceError

API_VERSION = "7.1"
DEFAULT_TIMEOUT = (5.0, 20.0)  # connect, read


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


def organization_url(organization: str) -> str:
    """``contoso`` or ``https://dev.azure.com/contoso/`` → ``https://dev.azure.com/contoso``."""
    organization = organization.strip().rstrip("/")
    if organization.startswith(("https://", "http://")):
        return organization
    return f"https://dev.azure.com/{quote(organization, safe='')}"


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
    ) -> None:
        self.base_url = organization_url(organization)
        self._credential = credential
        self._http = http or requests.Session()
        self._timeout = timeout
        self.requests_made = 0

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        what: str,
    ) -> requests.Response:
        url = f"{self.base_url}/{path.lstrip('/')}"
        query = {**(params or {}), "api-version": API_VERSION}
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
            return self._check(response, what)
        raise AssertionError("unreachable")

    def _check(self, response: requests.Response, what: str) -> requests.Response:
        status = response.status_code
        if status < 300:
            return response
        limits = rate_limit_headers(response.headers)
        detail = _service_message(response)
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
        hint = {
            400: "check the pipeline id and that the YAML declares every template parameter",
            401: "the credential was refused; check the PAT or service principal in the secret",
            403: "the identity lacks 'Queue builds' permission on the pipeline",
            404: "check organization, project and pipeline id",
        }.get(status, "")
        hint_text = f" ({hint})" if hint else ""
        raise AzureDevOpsError(f"{what}: HTTP {status}{suffix}{hint_text}", status=status)

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
