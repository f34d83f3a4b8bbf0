"""One client for the Azure DevOps REST calls the bridge makes, on ``requests``.

Why not the official ``azure-devops`` package: its clients resolve every area with an extra
location-discovery round trip on first use (one more request per Lambda cold start), and it has
no client for YAML pipeline approvals. Each method here is exactly one HTTP request (plus one
retry after a 401 with a refreshed credential); the caller decides on retries, because whether a
failed ``POST …/runs`` may be retried depends on whether a run might already exist.

Every request carries ``X-TFS-FedAuthRedirect: Suppress``: without it a refused PAT gets HTTP 203
and an HTML sign-in page instead of a 401. A sign-in page that comes anyway (a 203, or HTML on a
2xx) is handled as a 401. No answer is used unchecked: a 2xx without what the bridge needs is an
:class:`AzureDevOpsError`, never a ``KeyError``.

The one exception is :meth:`AzureDevOpsClient.send` for a GET (reading is safe to repeat): after
a 429, a 5xx, a time-out or a broken connection it tries again up to ``get_retries`` times,
waiting ``Retry-After`` (or 1, 2, 4 … s) but never longer than ``max_retry_wait`` per wait (a
longer ``Retry-After`` fails at once). Writes sent through ``send`` are never retried, except
once after a 401 like every request. ``sleep`` is injectable so tests do not wait.
:meth:`AzureDevOpsClient.iter_builds` is one request per page of ``Builds - List``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import requests

from bridge import __version__
from bridge.azure_devops.credentials import AzureDevOpsCredential
from bridge.errors import ServiceError, UserError, mask

API_VERSION = "7.1"
DEFAULT_TIMEOUT = (5.0, 20.0)  # connect, read
GET_RETRIES = 3  # extra attempts of a GET sent through ``send`` after 429/5xx/time-out
MAX_RETRY_WAIT = 60.0  # seconds; a longer Retry-After fails at once instead of blocking
# Without it a refused credential gets HTTP 203 and an HTML sign-in page, not a 401 (the header
# Microsoft's own azure-devops Python client sends on every request).
SUPPRESS_SIGN_IN = {"X-TFS-FedAuthRedirect": "Suppress"}
CONTINUATION_HEADER = "x-ms-continuationtoken"
MAX_PAGES = 20  # of a paged list: a service that keeps sending continuation tokens cannot loop us
SERVICE_MESSAGE_LIMIT = 300  # characters of the service's own message kept in an error


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
        if status == 401:
            self.exit_code = 6  # the credential was refused (bridge/errors.py)


# Advice for the pipeline-run calls (run_pipeline, list_builds); other requests bring their own.
PIPELINE_HINTS = {
    400: "check the pipeline id and that the YAML declares every template parameter",
    401: "the credential was refused; check the PAT or service principal in the secret",
    403: "the identity lacks 'Queue builds' permission on the pipeline",
    404: "check organization, project and pipeline id",
}


@dataclass(frozen=True)
class PipelineRun:
    """A run as ``Runs - Run Pipeline`` and ``Builds - List`` return it (what the bridge uses)."""

    id: int
    web_url: str
    template_parameters: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_response(cls, data: Any, context: str = "Azure DevOps run") -> PipelineRun:
        """``context`` starts the error if ``data`` is not a run, e.g. ``"run …: HTTP 200"``."""
        run = json_object(data, context)
        return cls(
            id=integer_field(run, "id", context),
            web_url=web_href(run),
            template_parameters=string_map(run, "templateParameters", context),
        )


@dataclass(frozen=True)
class ApiRequest:
    """One Azure DevOps REST request, described before it is sent (a dry run prints it).

    ``path`` is relative to the organization URL; ``what`` names the operation in errors;
    ``hints`` (HTTP status → advice) are added to the error of a refused request.
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


def web_href(data: Any) -> str:
    """The ``_links.web.href`` of a resource ("" when absent or not a string)."""
    for key in ("_links", "web", "href"):
        data = data.get(key) if isinstance(data, Mapping) else None
    return data if isinstance(data, str) else ""


def run_pipeline_request(
    project: str,
    pipeline_id: int,
    *,
    template_parameters: Mapping[str, str],
    ref_name: str | None = None,
) -> ApiRequest:
    """``Runs - Run Pipeline``: ``POST {project}/_apis/pipelines/{id}/runs``."""
    body: dict[str, Any] = {"templateParameters": dict(template_parameters)}
    if ref_name:
        body["resources"] = {"repositories": {"self": {"refName": ref_name}}}
    return ApiRequest(
        "POST",
        f"{quote(project, safe='')}/_apis/pipelines/{int(pipeline_id)}/runs",
        API_VERSION,
        f"run pipeline {pipeline_id} in {project}",
        body=body,
        hints=PIPELINE_HINTS,
    )


def list_builds_request(
    project: str,
    definition_id: int,
    *,
    min_time: datetime | None = None,
    top: int = 100,
    continuation_token: str | None = None,
) -> ApiRequest:
    """``Builds - List`` of one definition, newest first: ``GET {project}/_apis/build/builds``;
    ``continuation_token`` (from the last page's ``x-ms-continuationtoken``) asks for the next."""
    params: dict[str, Any] = {
        "definitions": str(int(definition_id)),
        "queryOrder": "queueTimeDescending",
        "$top": top,
    }
    if min_time is not None:
        params["minTime"] = min_time.isoformat().replace("+00:00", "Z")
    if continuation_token:
        params["continuationToken"] = continuation_token
    return ApiRequest(
        "GET",
        f"{quote(project, safe='')}/_apis/build/builds",
        API_VERSION,
        f"list runs of pipeline {definition_id} in {project}",
        params=params,
        hints=PIPELINE_HINTS,
    )


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


# -- Reading answers: a 2xx without what the bridge needs is an AzureDevOpsError -------------


def malformed(context: str, problem: str) -> AzureDevOpsError:
    """``context`` (e.g. ``"run pipeline 12 in mlops: HTTP 200"``) followed by ``problem``.

    ``maybe_processed``: the service answered 2xx, so it did act on the request.
    """
    return AzureDevOpsError(f"{context} {problem}", maybe_processed=True)


def json_kind(value: Any) -> str:
    """What a JSON value is, for errors (never the value: it could echo a secret)."""
    if value is None:
        return "an empty body or null"
    kinds = ((bool, "a boolean"), (int | float, "a number"), (str, "a string"), (list, "a list"))
    return next((name for kind, name in kinds if isinstance(value, kind)), "an object")


def json_object(data: Any, context: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise malformed(context, f"with {json_kind(data)} instead of a JSON object")
    return data


def integer_field(data: Mapping[str, Any], key: str, context: str) -> int:
    value = data.get(key)
    if value is None:
        raise malformed(context, f"without {key!r} in the response")
    if isinstance(value, bool) or not isinstance(value, int):
        raise malformed(context, f"with {key!r} not an integer but {json_kind(value)}")
    return value


def string_map(data: Mapping[str, Any], key: str, context: str) -> dict[str, str]:
    """An optional map of strings (``{}`` when absent or null)."""
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise malformed(context, f"with {key!r} not an object but {json_kind(value)}")
    return {str(k): str(v) for k, v in value.items()}


def wrong_type(context: str, name: str, wanted: str, value: Any) -> AzureDevOpsError:
    """``name`` is quoted: ``'settings.approvers'``, ``'settings.approvers' item 2``."""
    return malformed(context, f"with {name} not {wanted} but {json_kind(value)}")


def optional_text(data: Mapping[str, Any], key: str, context: str, where: str = "") -> str:
    """A string field ("" when absent or null)."""
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise wrong_type(context, f"'{where}{key}'", "a string", value)
    return value


def required_text(data: Mapping[str, Any], key: str, context: str, where: str = "") -> str:
    """A string field that must be there and not be empty (an id)."""
    value = optional_text(data, key, context, where)
    if not value:
        raise malformed(context, f"without '{where}{key}' in the response")
    return value


def optional_integer(
    data: Mapping[str, Any], key: str, context: str, where: str = ""
) -> int | None:
    value = data.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise wrong_type(context, f"'{where}{key}'", "an integer", value)
    return value


def optional_boolean(
    data: Mapping[str, Any], key: str, context: str, where: str = ""
) -> bool | None:
    value = data.get(key)
    if value is not None and not isinstance(value, bool):
        raise wrong_type(context, f"'{where}{key}'", "a boolean", value)
    return value


def optional_object(
    data: Mapping[str, Any], key: str, context: str, where: str = ""
) -> dict[str, Any]:
    """An object field (``{}`` when absent or null)."""
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise wrong_type(context, f"'{where}{key}'", "an object", value)
    return value


def optional_objects(
    data: Mapping[str, Any], key: str, context: str, where: str = ""
) -> list[dict[str, Any]]:
    """A list of objects (``[]`` when absent or null); an item that is not an object is an
    error naming it."""
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise wrong_type(context, f"'{where}{key}'", "a list", value)
    for n, item in enumerate(value, 1):
        if not isinstance(item, dict):
            raise wrong_type(context, f"'{where}{key}' item {n}", "an object", item)
    return value


def collection(data: Any, context: str = "Azure DevOps list response") -> list[dict[str, Any]]:
    """The items of a list response: ``{"count": n, "value": [...]}`` on the wire, or a list.

    Anything else, or an item that is not an object, is an error naming ``context``.
    """
    if isinstance(data, list):
        items = data
    elif not isinstance(data, dict):
        raise malformed(context, f"with {json_kind(data)} instead of a list")
    elif "value" not in data:
        raise malformed(context, "without 'value' in the response")
    elif not isinstance(items := data["value"], list):
        raise malformed(context, f"with 'value' not a list but {json_kind(items)}")
    return [json_object(item, f"{context}, item {n} of 'value'") for n, item in enumerate(items, 1)]


def response_json(response: requests.Response, what: str) -> Any:
    """The JSON body of a successful response (``None`` if empty), or one clear error."""
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        raise malformed(f"{what}: HTTP {response.status_code}", "without a JSON body") from None


def is_sign_in_page(response: requests.Response) -> bool:
    """A 203, or HTML on a 2xx: what a refused credential gets instead of a 401 when the
    ``X-TFS-FedAuthRedirect`` header is ignored (by a proxy, say)."""
    if response.status_code == 203:
        return True
    if not 200 <= response.status_code < 300 or not response.content:
        return False
    content_type = response.headers.get("Content-Type", "").lower()
    return "html" in content_type or response.content.lstrip().startswith(b"<")


def sign_in_refused(response: requests.Response, what: str) -> AzureDevOpsError:
    """The error for a sign-in page after the retry: a refused credential (exit code 6)."""
    return AzureDevOpsError(
        f"{what}: HTTP {response.status_code} without a JSON body: Azure DevOps answered with a "
        "sign-in page, the credential was refused (check that the PAT or token is valid and "
        "has not expired)",
        status=401,
    )


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


def _service_message(response: requests.Response, secrets: list[str]) -> str:
    """The service's own message, masked, then cut: cut first, a secret straddling the cut
    would no longer match and its first part would be printed."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if isinstance(body, dict):
        message = str(body.get("message") or body.get("typeKey") or "")
        return mask(message, secrets)[:SERVICE_MESSAGE_LIMIT]
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

    def _request(self, request: ApiRequest) -> requests.Response:
        """One HTTP request (plus one retry after a 401 or a sign-in page, with the credential
        read again)."""
        for attempt in (1, 2):
            response = self._send_once(request)
            sign_in = is_sign_in_page(response)
            if attempt == 1 and (sign_in or response.status_code == 401):
                self._credential.invalidate()  # rotated PAT or expired token: read it again
                continue
            if sign_in:
                raise sign_in_refused(response, request.what)
            return self._check(response, request.what, request.hints)
        raise AssertionError("unreachable")

    def _send_once(self, request: ApiRequest) -> requests.Response:
        headers = {
            "Authorization": self._credential.authorization(),
            "Accept": "application/json",
            "User-Agent": f"smbridge/{__version__}",
            **SUPPRESS_SIGN_IN,
        }
        self.requests_made += 1
        try:
            return self._http.request(
                request.method,
                f"{self.base_url}/{request.path.lstrip('/')}",
                params={**request.params, "api-version": request.api_version},
                json=request.body,
                headers=headers,
                timeout=self._timeout,
            )
        except requests.Timeout:
            raise AzureDevOpsError(
                f"{request.what}: timed out", retryable=True, maybe_processed=True
            ) from None
        except requests.ConnectionError:
            # The request may have been sent before the connection broke.
            raise AzureDevOpsError(
                f"{request.what}: connection failed", retryable=True, maybe_processed=True
            ) from None
        except requests.RequestException as exc:
            # Refused before sending (an invalid header or URL): requests quotes what it refused,
            # which may be the Authorization header, so only the kind of failure is named.
            raise AzureDevOpsError(
                f"{request.what}: the request could not be sent ({type(exc).__name__})"
            ) from None

    def _check(
        self, response: requests.Response, what: str, hints: Mapping[int, str]
    ) -> requests.Response:
        status = response.status_code
        if status < 300:
            return response
        secrets = self._credential.secrets()
        # The service's own words may echo what it was sent: never the credential. The rate
        # limit headers too (the trigger logs them).
        limits = {k: mask(v, secrets) for k, v in rate_limit_headers(response.headers).items()}
        detail = _service_message(response, secrets)
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
        hint = hints.get(status, "")
        hint_text = f" ({hint})" if hint else ""
        raise AzureDevOpsError(f"{what}: HTTP {status}{suffix}{hint_text}", status=status)

    # -- Any operation -------------------------------------------------------------------------

    def send(self, request: ApiRequest) -> requests.Response:
        """Send ``request`` with its own api-version: one HTTP request (plus one retry after a
        401 or a sign-in page). A GET is also retried after 429/5xx/time-out/connection failure,
        bounded (see the module docstring); any other method fails at once with
        :class:`AzureDevOpsError`."""
        retries = self._get_retries if request.method.upper() == "GET" else 0
        for attempt in range(retries + 1):
            try:
                return self._request(request)
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
        """``Runs - Run Pipeline``: one POST, never retried here (the caller decides, since a run
        may exist after a failure)."""
        request = run_pipeline_request(
            project, pipeline_id, template_parameters=template_parameters, ref_name=ref_name
        )
        response = self._request(request)
        data = response_json(response, request.what)
        return PipelineRun.from_response(data, f"{request.what}: HTTP {response.status_code}")

    # -- Builds -------------------------------------------------------------------------------

    def list_builds(
        self,
        project: str,
        definition_id: int,
        *,
        min_time: datetime | None = None,
        top: int = 100,
        max_pages: int = MAX_PAGES,
    ) -> list[PipelineRun]:
        """Every page of :meth:`iter_builds`, as a list."""
        return list(
            self.iter_builds(
                project, definition_id, min_time=min_time, top=top, max_pages=max_pages
            )
        )

    def iter_builds(
        self,
        project: str,
        definition_id: int,
        *,
        min_time: datetime | None = None,
        top: int = 100,
        max_pages: int = MAX_PAGES,
    ) -> Iterator[PipelineRun]:
        """``Builds - List`` for one pipeline definition, newest first, ``top`` per page; the next
        page is only asked for when the caller reads on. Unlike ``Runs - List`` it returns each
        run's ``templateParameters``: the way to find a run for a model package.

        More than ``max_pages`` pages is an error, not a silent cut: a run on a page not read
        would be started a second time."""
        token: str | None = None
        for _ in range(max(1, max_pages)):
            request = list_builds_request(
                project, definition_id, min_time=min_time, top=top, continuation_token=token
            )
            # _request, not send: this GET is part of the trigger's own retry plan (starter.py).
            response = self._request(request)
            context = f"{request.what}: HTTP {response.status_code}"
            items = collection(response_json(response, request.what), context)
            for n, item in enumerate(items, 1):
                yield PipelineRun.from_response(item, f"{context}, item {n} of 'value'")
            token = response.headers.get(CONTINUATION_HEADER)
            if not token:
                return
        raise AzureDevOpsError(
            f"{request.what}: more than {max_pages} pages of {top} runs, stopped reading "
            "(a run on a later page would be missed)"
        )
