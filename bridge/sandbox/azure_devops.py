"""The Azure DevOps stand-in, transport-agnostic: state and answers, no socket.

:meth:`AzureDevOpsStandIn.handle` takes one request (method, URL, headers, body) and returns a
:class:`StandInResponse`. :class:`bridge.sandbox.ado_server.AzureDevOpsServer` serves it over
HTTP on 127.0.0.1; the tests drive it through ``responses`` (``tests/support/fake_ado.py``).
The stand-in is not Azure DevOps: it answers the operations the bridge uses, in the shapes the
service documents and records, and it is at least as strict as the service on every point it
tests. Where an answer encodes service behaviour, the comment names the source.

What it keeps and answers:

* runs (``Runs_Run Pipeline``): 200 with the run; 400 ``PipelineValidationException`` for a
  template parameter the pipeline's YAML does not declare (read from the YAML's top-level
  ``parameters:``, :func:`declared_parameters`); 404 for an unknown pipeline;
* builds (``Builds_List``), newest first, paged with ``x-ms-continuationtoken``;
* pipelines (``Pipelines_Get``): each YAML pipeline with the path of its YAML
  (``pipeline_paths``); 404 for an unknown one;
* service connections (``Endpoints_Get``): each of ``service_connections`` as a workload identity
  federation connection that is ready; an unknown id gets a 200 with an empty body, as the
  service answers it;
* the job's OIDC token (``Oidctoken_Create``), with the claims the service issues
  (``oidc_claims`` overrides them);
* environments, their check configurations, pipeline permissions on them, and pipeline approvals
  (list answers wrapped as the service wraps them, ``{"count", "value"}``); a pending approval
  for an environment's Approval check (:meth:`AzureDevOpsStandIn.request_approval`) that only
  the check's approvers can decide, each with their own credential;
* refused credentials: HTTP 203 and an HTML sign-in page, or 401 when the request says
  ``X-TFS-FedAuthRedirect: Suppress``;
* throttling on demand: 429 with ``Retry-After`` (:meth:`AzureDevOpsStandIn.throttle`);
* injected faults per operation family (:class:`Fault`), queued or drawn per request by a
  ``fault_policy`` (:data:`FaultPolicy`; seeded, probability-driven plans in
  :mod:`bridge.sandbox.faults`).

Every request is first held against the OpenAPI specs in reference/
(:class:`~bridge.sandbox.ado_contract.AzureDevOpsContract`). One that breaks them is refused
with a 400 whose message names the violation, and recorded in ``violations`` (or raised, with
``raise_violations``, as the tests want it).

All state is behind one lock: the HTTP server is threaded. The credentials the stand-in accepts
never appear in an answer, a recorded violation or an exception message (they are masked).
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import yaml

from bridge.sandbox.ado_contract import (
    APPROVAL_CHECK_TYPE_ID,
    AzureDevOpsContract,
    ContractViolation,
    SandboxUnavailable,
    repository_file,
)

MODEL_DEPLOY_YAML = "azure-pipelines/model-deploy.yml"
ADMIN_ID = "3b3db741-9d03-4e32-a7c0-6c3dfc2013c1"
PROJECT_ID = "d6b3e0ea-8197-4dec-831b-50e2e06ff95f"  # as in reference/ado-examples/
TENANT_ID = "9b2d4f6a-3c5e-4a7b-8d9c-1e2f3a4b5c6d"  # the Entra tenant of the ARM connections
REPOSITORY_ID = "0f9e8d7c-6b5a-4938-8271-605f4e3d2c1b"  # the project's Azure Repos Git repository
# The OIDC tokens' signature segment: not a real signature (base64url of "sandbox-signature")
OIDC_SIGNATURE = "c2FuZGJveC1zaWduYXR1cmU"
SIGN_IN_PAGE = (
    "<!DOCTYPE html><html><head><title>Azure DevOps Services | Sign In</title></head></html>"
)
JSON = "application/json; charset=utf-8"
# What the service says when it blocks a throttled identity (Microsoft docs, "Rate limits":
# https://learn.microsoft.com/azure/devops/integrate/concepts/rate-limits).
THROTTLED_MESSAGE = (
    "TF400733: The request has been canceled: Request was blocked due to exceeding usage of "
    "resource 'Core' in namespace 'User'."
)
CONTRACT_VIOLATION = "SandboxContractViolation"


def declared_parameters(path: str | Path = MODEL_DEPLOY_YAML) -> frozenset[str]:
    """The names an Azure Pipelines YAML file declares in its top-level ``parameters:`` (a list
    of ``{name: ...}``, or the older mapping of name to default). A path relative to the
    repository is looked up in the clone (:class:`SandboxUnavailable` without one)."""
    path = Path(path)
    if not path.is_absolute():
        path = repository_file(path.as_posix())
    elif not path.exists():
        raise SandboxUnavailable(f"pipeline YAML {path} not found")
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    parameters = document.get("parameters") if isinstance(document, dict) else None
    if isinstance(parameters, dict):
        return frozenset(str(name) for name in parameters)
    if isinstance(parameters, list):
        return frozenset(str(p["name"]) for p in parameters if isinstance(p, dict) and "name" in p)
    return frozenset()


_contract: AzureDevOpsContract | None = None
_contract_lock = threading.Lock()


def shared_contract() -> AzureDevOpsContract:
    """The specs, parsed once per process."""
    global _contract
    with _contract_lock:
        if _contract is None:
            _contract = AzureDevOpsContract()
        return _contract


@dataclass(frozen=True)
class StandInRequest:
    """One request as the stand-in sees it. ``headers`` have lower-case names; ``identity`` is
    the IdentityRef the credential stands for (``None`` before authentication)."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes | str | None
    identity: Mapping[str, Any] | None = None

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")

    @property
    def path_parts(self) -> list[str]:
        return urlsplit(self.url).path.split("/")

    @property
    def query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.url).query).items()}

    @property
    def organization_url(self) -> str:
        """``https://dev.azure.com/contoso`` or ``http://127.0.0.1:PORT/contoso``."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}/{self.path_parts[1]}"

    @property
    def project(self) -> str:
        return unquote(self.path_parts[2])

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass(frozen=True)
class StandInResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.body)


class TransportFault(Exception):
    """No answer at all: ``kind`` is ``timeout`` (the request is held unanswered) or
    ``connection`` (the connection is dropped). The transport acts it out."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"injected {kind}")
        self.kind = kind


@dataclass
class Fault:
    """What the next request of a family gets instead of its normal answer.

    kind: ``status`` (answer ``status`` with ``headers``), ``timeout`` or ``connection``.
    processed: the run is created anyway (the response was lost or an error came after).
    """

    kind: str
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    processed: bool = False

    @classmethod
    def throttled(cls, retry_after: int = 30) -> Fault:
        """A 429 with ``Retry-After`` (seconds) and ``X-RateLimit-*`` headers, as the service
        sends when it blocks an identity (Microsoft docs, "Rate limits")."""
        return cls("status", 429, throttle_headers(retry_after))


@dataclass(frozen=True)
class Violation:
    """A refused request: method, path and query (never headers), what broke the contract."""

    method: str
    path: str
    message: str


def throttle_headers(retry_after: int) -> dict[str, str]:
    # Microsoft docs, "Rate limits" (Retry-After in seconds; X-RateLimit-Resource, -Delay,
    # -Limit, -Remaining, -Reset, with Remaining 0 once requests are delayed or blocked).
    return {
        "Retry-After": str(int(retry_after)),
        "X-RateLimit-Resource": "Core",
        "X-RateLimit-Delay": "0",
        "X-RateLimit-Limit": "200",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(int(time.time()) + int(retry_after)),
    }


def service_error(message: str, type_key: str = "", type_name: str = "") -> str:
    """The service's error body (``{"$id", "innerException", "message", "typeName", "typeKey",
    "errorCode", "eventId"}``, as in the answers quoted in microsoft/coe-starter-kit#4112 and
    tests/unit/test_oidc_errors.py); type names only where known."""
    body: dict[str, Any] = {"$id": "1", "innerException": None, "message": message}
    if type_key:
        body.update(typeName=type_name or type_key, typeKey=type_key)
    body.update(errorCode=0, eventId=3000)
    return json.dumps(body)


Result = tuple[int, dict[str, str], str | bytes]
Handler = Callable[[Any, StandInRequest], Result]
# Called for each authenticated request that has no queued fault, under the stand-in's lock,
# with the operation id and the request: the fault it gets instead of its answer, or None.
FaultPolicy = Callable[[str, StandInRequest], "Fault | None"]


@dataclass
class AzureDevOpsStandIn:
    """The state of one Azure DevOps organization's project, and its answers."""

    pat: str = field(default="fake-pat", repr=False)
    declared: frozenset[str] = field(default_factory=declared_parameters)
    pipelines: frozenset[int] = frozenset({12, 13})
    pipeline_names: dict[int, str] = field(default_factory=lambda: {13: "model-deploy"})
    runs: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str, Any, str]] = field(default_factory=list, repr=False)
    faults: deque[Fault] = field(default_factory=deque)  # next POST …/runs
    list_faults: deque[Fault] = field(default_factory=deque)  # next Builds_List
    accepted_auth: set[str] = field(default_factory=set, repr=False)  # whole header values
    environments: list[dict[str, Any]] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    approvals: dict[str, dict[str, Any]] = field(default_factory=dict)
    # (resourceType, resourceId) -> ResourcePipelinePermissions as the service keeps it
    permissions: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    admin_faults: deque[Fault] = field(default_factory=deque)  # next environment/check/approval
    # after the queued faults: a fault per request (runs, builds and the admin operations)
    fault_policy: FaultPolicy | None = field(default=None, repr=False, compare=False)
    # a refused credential gets the 203 sign-in page even with X-TFS-FedAuthRedirect: Suppress,
    # as behind a proxy that drops the header (bridge/azure_devops/client.py handles both)
    sign_in_page_despite_suppress: bool = False
    completed_approval_status: int = 409  # what Approvals_Update answers for a non-pending one
    builds_page_size: int | None = None  # Builds_List: one answer (up to $top) unless set
    default_branch: str = "refs/heads/main"
    raise_violations: bool = False  # raise ContractViolation instead of answering 400
    violations: list[Violation] = field(default_factory=list)
    unimplemented: list[str] = field(default_factory=list)  # operations answered 501
    admin: dict[str, Any] = field(
        default_factory=lambda: {"id": ADMIN_ID, "displayName": "Admin"}
    )  # the identity of ``pat`` and of ``accepted_auth``
    reviewers: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)  # PAT -> id
    identities: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> IdentityRef
    throttled: int = 0  # the next this many authenticated requests get a 429
    retry_after: int = 30
    run_requesters: dict[int, dict[str, Any]] = field(default_factory=dict)
    # Pipelines_Get: pipeline id -> its YAML's path in the repository (configuration.path);
    # a pipeline not listed has MODEL_DEPLOY_YAML
    pipeline_paths: dict[int, str] = field(default_factory=dict)
    repository_id: str = REPOSITORY_ID
    # Oidctoken_Create and Endpoints_Get: service connection id (lower case) -> its name (each a
    # workload identity federation connection); project id -> name
    service_connections: dict[str, str] = field(default_factory=dict)
    project_names: dict[str, str] = field(default_factory=dict)
    # Oidctoken_Create: claims that replace (or add to) those of each token it issues, e.g.
    # {"exp": <in the past>} or {"aud": "api://other"}; a value None removes the claim
    oidc_claims: dict[str, Any] = field(default_factory=dict)
    organization_id: str = "4a6f2c1e-0b3d-4e5f-8a9b-7c6d5e4f3a2b"
    contract: AzureDevOpsContract = field(
        default_factory=shared_contract, repr=False, compare=False
    )
    _lock: threading.RLock = field(
        default_factory=threading.RLock, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        self._changed = threading.Condition(self._lock)
        self.identities.setdefault(self.admin["id"], dict(self.admin))

    @classmethod
    def for_pipeline_yaml(
        cls, path: str | Path = MODEL_DEPLOY_YAML, **fields: Any
    ) -> AzureDevOpsStandIn:
        """A stand-in whose pipelines declare the parameters of ``path`` (it reads the YAML)."""
        return cls(declared=declared_parameters(path), **fields)

    # -- one request ----------------------------------------------------------------------------

    def handle(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | str | None = None,
    ) -> StandInResponse:
        """Answer one request. Raises :class:`TransportFault` for an injected time-out or broken
        connection (and :class:`ContractViolation` with ``raise_violations``)."""
        request = StandInRequest(
            method.upper(), url, {str(k).lower(): str(v) for k, v in headers.items()}, body
        )
        with self._lock:
            try:
                return self._response(self._answer(request))
            finally:
                self._changed.notify_all()

    def _answer(self, request: StandInRequest) -> Result:
        try:
            operation = self.contract.check(request.method, request.url, request.body)
        except ContractViolation as violation:
            message = self._mask(str(violation))
            parts = urlsplit(request.url)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            self.violations.append(Violation(request.method, self._mask(path), message))
            if self.raise_violations:
                raise ContractViolation(message) from None
            text = (
                "smbridge sandbox: the request breaks the Azure DevOps REST contract "
                f"(the OpenAPI specs in reference/): {message}"
            )
            return 400, {}, service_error(text, CONTRACT_VIOLATION)
        self.requests.append((request.method, request.url, request.body, operation))
        identity = self._identity_of(request.header("Authorization"))
        if identity is None:
            # Microsoft docs, "Authenticate with personal access tokens" / the REST API's
            # X-TFS-FedAuthRedirect header: without it a refused credential gets a 203 and the
            # sign-in page instead of a 401.
            suppress = request.header("X-TFS-FedAuthRedirect") == "Suppress"
            if not suppress or self.sign_in_page_despite_suppress:
                return 203, {"Content-Type": "text/html; charset=utf-8"}, SIGN_IN_PAGE
            return 401, {}, ""
        if self.throttled > 0:
            self.throttled -= 1
            headers = throttle_headers(self.retry_after)
            return 429, headers, service_error(THROTTLED_MESSAGE)
        return self._dispatch(operation, replace(request, identity=identity))

    def _dispatch(self, operation: str, request: StandInRequest) -> Result:
        if operation == "Runs_Run Pipeline":
            return self._run(request)
        if operation == "Builds_List":
            if self.list_faults:
                return self._fault(self.list_faults.popleft(), None)
            if (fault := self._policy_fault(operation, request)) is not None:
                return self._fault(fault, None)
            return self._builds(request)
        handler = self._admin_handlers().get(operation)
        if handler is not None:
            if self.admin_faults:
                return self._fault(self.admin_faults.popleft(), None)
            if (fault := self._policy_fault(operation, request)) is not None:
                return self._fault(fault, None)
            return handler(self, request)
        self.unimplemented.append(operation)
        message = (
            f"smbridge sandbox: {operation} is in the specs but the stand-in does not answer it"
        )
        return 501, {}, service_error(message, "SandboxNotImplemented")

    def _admin_handlers(self) -> Mapping[str, Handler]:
        return ADMIN_HANDLERS

    def _response(self, result: Result) -> StandInResponse:
        status, headers, body = result
        text = body.decode("utf-8") if isinstance(body, bytes) else str(body)
        headers = dict(headers)
        if text and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = JSON
        return StandInResponse(status, headers, self._mask(text).encode("utf-8"))

    # -- credentials ------------------------------------------------------------------------------

    def _identity_of(self, header: str) -> dict[str, Any] | None:
        if header in self.accepted_auth:
            return self.admin
        pat = _basic_password(header)
        if pat is None:
            return None
        if pat == self.pat:
            return self.admin
        return self.reviewers.get(pat)

    def _secrets(self) -> list[str]:
        values = [self.pat, *self.reviewers]
        found = []
        for value in values:
            found += [value, base64.b64encode(f":{value}".encode()).decode()]
        for header in self.accepted_auth:
            found += [header, header.split(" ", 1)[-1]]
        return [s for s in found if len(s) >= 4]

    def _mask(self, text: str) -> str:
        for secret in sorted(self._secrets(), key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    def add_reviewer(
        self, display_name: str, pat: str, *, identity_id: str | None = None
    ) -> dict[str, Any]:
        """A person with their own PAT: they may decide the approvals they are an approver of
        (through ``smbridge ado approvals approve`` with ``SMBRIDGE_ADO_PAT`` set to ``pat``).
        Returns their IdentityRef."""
        with self._lock:
            identity = {
                "id": identity_id or str(uuid.uuid4()),
                "displayName": display_name,
                "uniqueName": f"{display_name.lower().replace(' ', '.')}@sandbox.invalid",
            }
            self.identities[identity["id"]] = identity
            self.reviewers[pat] = identity
            return dict(identity)

    def throttle(self, count: int = 1, retry_after: int = 30) -> None:
        """The next ``count`` authenticated requests (any operation) get a 429."""
        with self._lock:
            self.throttled, self.retry_after = count, retry_after

    # -- faults -----------------------------------------------------------------------------------

    def _policy_fault(self, operation: str, request: StandInRequest) -> Fault | None:
        return None if self.fault_policy is None else self.fault_policy(operation, request)

    def _fault(self, fault: Fault, create: Callable[[], Any] | None) -> Result:
        if fault.processed and create is not None:
            create()
        if fault.kind in ("timeout", "connection"):
            raise TransportFault(fault.kind)
        if fault.kind != "status":
            raise ValueError(f"unknown fault kind {fault.kind!r}")
        return fault.status, dict(fault.headers), json.dumps({"message": f"fault {fault.status}"})

    # -- runs and builds --------------------------------------------------------------------------

    def _run(self, request: StandInRequest) -> Result:
        project, pipeline_id = request.project, int(request.path_parts[5])
        body = request.json() or {}
        parameters = body.get("templateParameters") or {}
        ref = ((body.get("resources") or {}).get("repositories") or {}).get("self", {})
        base = request.organization_url

        def create() -> dict[str, Any]:
            run_id = 1000 + len(self.runs)
            run = {
                "id": run_id,
                "name": f"20261123.{run_id}",
                "state": "inProgress",
                "pipelineId": pipeline_id,
                "project": project,
                "templateParameters": parameters,
                "refName": ref.get("refName"),
                "queueTime": _now(),
                "_links": {"web": {"href": _web_url(base, project, run_id)}},
            }
            self.runs.append(run)
            self.run_requesters[run_id] = dict(request.identity or self.admin)
            return run

        if self.faults:
            return self._fault(self.faults.popleft(), create)
        if (fault := self._policy_fault("Runs_Run Pipeline", request)) is not None:
            return self._fault(fault, create)
        if pipeline_id not in self.pipelines:
            return 404, {}, json.dumps({"message": f"Pipeline {pipeline_id} not found."})
        undeclared = sorted(set(parameters) - self.declared)
        if undeclared:
            # The Runs API refuses a template parameter the YAML does not declare
            # (reference/README.md; the answer as quoted in microsoft/coe-starter-kit#4112).
            return (
                400,
                {},
                service_error(
                    f"Unexpected parameter '{undeclared[0]}'",
                    "PipelineValidationException",
                    "Microsoft.Azure.Pipelines.WebApi.PipelineValidationException, "
                    "Microsoft.Azure.Pipelines.WebApi",
                ),
            )
        run = create()
        # reference/README.md: X-RateLimit-* headers may come on successful responses too
        headers = {"X-RateLimit-Resource": "core", "X-RateLimit-Remaining": "150"}
        return 200, headers, json.dumps(self._run_view(run, base))

    def _run_view(self, run: dict[str, Any], base: str) -> dict[str, Any]:
        """A ``Run`` (pipelines 7.1 spec: RunReference + Run's properties)."""
        project, pipeline_id = quote(run["project"], safe=""), run["pipelineId"]
        api = f"{base}/{project}/_apis/pipelines/{pipeline_id}/runs/{run['id']}"
        pipeline_api = f"{base}/{project}/_apis/pipelines/{pipeline_id}?revision=1"
        view: dict[str, Any] = {
            "_links": {
                "self": {"href": api},
                "web": {"href": run["_links"]["web"]["href"]},
                "pipeline.web": {
                    "href": f"{base}/{project}/_build/definition?definitionId={pipeline_id}"
                },
                "pipeline": {"href": pipeline_api},
            },
            "pipeline": {
                "url": pipeline_api,
                "id": pipeline_id,
                "revision": 1,
                "name": self._pipeline_name(pipeline_id),
                "folder": "\\",
            },
            "state": run["state"],
            "createdDate": run["queueTime"],
            "url": api,
            "resources": {
                "repositories": {"self": {"refName": run["refName"] or self.default_branch}}
            },
            "templateParameters": run["templateParameters"],
            "id": run["id"],
            "name": run["name"],
        }
        for key in ("result", "finishedDate"):
            if key in run:
                view[key] = run[key]
        return view

    def _pipeline_name(self, pipeline_id: int) -> str:
        return self.pipeline_names.get(pipeline_id, f"pipeline-{pipeline_id}")

    @property
    def oidc_issuer(self) -> str:
        """The issuer of the job's OIDC tokens (Microsoft's workload identity federation docs)."""
        return f"https://vstoken.dev.azure.com/{self.organization_id}"

    def finish_run(self, run_id: int, result: str = "succeeded") -> dict[str, Any]:
        """Move a run to ``completed`` with ``result`` (the stand-in runs no pipeline)."""
        with self._lock:
            run = self._find_run(run_id)
            run.update(state="completed", result=result, finishedDate=_now())
            self._changed.notify_all()
            return copy.deepcopy(run)

    def _find_run(self, run_id: int) -> dict[str, Any]:
        run = next((r for r in self.runs if r["id"] == run_id), None)
        if run is None:
            raise ValueError(f"no run {run_id} in the stand-in")
        return run

    def _builds(self, request: StandInRequest) -> Result:
        query = request.query
        definition = int(query["definitions"])
        min_time = query.get("minTime")
        value = []
        for run in reversed(self.runs):  # queryOrder=queueTimeDescending: newest first
            if run["pipelineId"] != definition:
                continue
            if min_time and _parse(run["queueTime"]) < _parse(min_time):
                continue
            build = {
                "id": run["id"],
                "buildNumber": run["name"],
                "status": "completed" if run["state"] == "completed" else "inProgress",
                "queueTime": run["queueTime"],
                "templateParameters": run["templateParameters"],
                "definition": {"id": definition, "name": self._pipeline_name(definition)},
                "sourceBranch": run["refName"] or self.default_branch,
                "_links": run["_links"],
            }
            if "result" in run:
                build["result"] = run["result"]
            value.append(build)
        top = int(query["$top"]) if "$top" in query else None
        return self._page(value, query.get("continuationToken"), top)

    def _page(self, value: list[Any], token: str | None, top: int | None = None) -> Result:
        """One page of at most ``$top`` (and ``builds_page_size``) items; the token is the next
        item's offset, sent as ``x-ms-continuationtoken`` (builds 7.1 spec, Builds - List)."""
        sizes = [s for s in (top, self.builds_page_size) if s]
        if not sizes:
            return 200, {}, json.dumps({"count": len(value), "value": value})
        size = min(sizes)
        start = int(token or 0)
        page = value[start : start + size]
        headers: dict[str, str] = {}
        if start + size < len(value):
            headers["x-ms-continuationtoken"] = str(start + size)
        return 200, headers, json.dumps({"count": len(page), "value": page})

    def post_count(self) -> int:
        return sum(1 for method, *_ in self.requests if method == "POST")

    def operations(self) -> list[str]:
        """The operation ids of the requests so far, in order."""
        return [operation for *_, operation in self.requests]

    # -- environments, checks, permissions --------------------------------------------------------

    def add_environment(self, name: str) -> dict[str, Any]:
        with self._lock:
            environment = {
                "id": len(self.environments) + 1,
                "name": name,
                "description": "",
                "createdOn": _now(),
                "project": {"id": PROJECT_ID, "name": "mlops"},
            }
            self.environments.append(environment)
            return environment

    def add_check(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            check = {
                **body,
                "id": 20 + len(self.checks),
                "createdOn": _now(),
                "modifiedOn": _now(),
                "createdBy": {"id": ADMIN_ID, "displayName": "Admin"},
            }
            self.checks.append(check)
            return check

    def _environments_list(self, request: StandInRequest) -> Result:
        name = request.query.get("name", "").casefold()
        # the service's name filter is looser than equality: the client must compare itself
        value = [e for e in self.environments if name in e["name"].casefold()]
        return 200, {}, json.dumps({"count": len(value), "value": value})

    def _environments_add(self, request: StandInRequest) -> Result:
        body = json.loads(request.body or "{}")
        if any(e["name"].casefold() == body["name"].casefold() for e in self.environments):
            message = f"Environment with name {body['name']} already exists."
            return 400, {}, json.dumps({"message": message})
        environment = self.add_environment(body["name"])
        environment["description"] = body.get("description", "")
        return 200, {}, json.dumps(environment)

    def _checks_list(self, request: StandInRequest) -> Result:
        query = request.query
        value = [
            c
            for c in self.checks
            if c["resource"]["type"] == query.get("resourceType")
            and c["resource"]["id"] == query.get("resourceId")
        ]
        # pipelinesChecks 7.1: settings only with $expand=settings
        if query.get("$expand") != "settings":
            value = [{k: v for k, v in c.items() if k != "settings"} for c in value]
        return 200, {}, json.dumps({"count": len(value), "value": value})

    def _checks_add(self, request: StandInRequest) -> Result:
        return 200, {}, json.dumps(self.add_check(json.loads(request.body or "{}")))

    def _checks_update(self, request: StandInRequest) -> Result:
        check_id = int(urlsplit(request.url).path.rsplit("/", 1)[-1])
        check = next((c for c in self.checks if c["id"] == check_id), None)
        if check is None:
            return 404, {}, json.dumps({"message": f"Check configuration {check_id} not found"})
        check.update(json.loads(request.body or "{}"), modifiedOn=_now())
        return 200, {}, json.dumps(check)

    def permit(self, resource_type: str, resource_id: str, *pipeline_ids: int) -> dict[str, Any]:
        """Authorise pipelines on a resource, as someone clicking Permit would."""
        with self._lock:
            permissions = self._permissions_of(resource_type, resource_id)
            for pipeline_id in pipeline_ids:
                self._authorise(permissions, {"id": pipeline_id, "authorized": True})
            return permissions

    def _permissions_of(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        return self.permissions.setdefault(
            (resource_type, resource_id),
            {"resource": {"type": resource_type, "id": resource_id}, "pipelines": []},
        )

    def _authorise(
        self,
        permissions: dict[str, Any],
        item: dict[str, Any],
        by: Mapping[str, Any] | None = None,
    ) -> None:
        pipelines = permissions["pipelines"]
        pipelines[:] = [p for p in pipelines if p["id"] != item["id"]]
        if item.get("authorized"):
            who = by or self.admin
            pipelines.append(
                {
                    "id": item["id"],
                    "authorized": True,
                    "authorizedBy": {"id": who["id"], "displayName": who["displayName"]},
                    "authorizedOn": _now(),
                }
            )

    def _resource_of(self, request: StandInRequest) -> tuple[str, str] | None:
        """(type, id) of a pipelinepermissions/{type}/{id} URL; ``None`` for an environment
        that does not exist (the service answers 404)."""
        *_, resource_type, resource_id = urlsplit(request.url).path.split("/")
        if resource_type == "environment" and not any(
            str(e["id"]) == resource_id for e in self.environments
        ):
            return None
        return resource_type, resource_id

    def _permissions_get(self, request: StandInRequest) -> Result:
        resource = self._resource_of(request)
        if resource is None:
            return 404, {}, json.dumps({"message": "Resource not found"})
        return 200, {}, json.dumps(self._permissions_of(*resource))

    def _permissions_update(self, request: StandInRequest) -> Result:
        resource = self._resource_of(request)
        if resource is None:
            return 404, {}, json.dumps({"message": "Resource not found"})
        permissions = self._permissions_of(*resource)
        body = json.loads(request.body or "{}")
        for item in body.get("pipelines") or []:
            self._authorise(permissions, item, request.identity)
        if body.get("allPipelines") is not None:
            permissions["allPipelines"] = {"authorized": bool(body["allPipelines"]["authorized"])}
        return 200, {}, json.dumps(permissions)

    # -- approvals --------------------------------------------------------------------------------

    def add_approval(
        self, approvers: list[str], *, status: str = "pending", pipeline: str = "model-deploy"
    ) -> str:
        """An approval with one step per approver id, all in ``status``; returns its id."""
        with self._lock:
            approval_id = str(uuid.uuid4())
            self.approvals[approval_id] = {
                "id": approval_id,
                "status": status,
                "createdOn": _now(),
                "lastModifiedOn": _now(),
                "executionOrder": "anyOrder",
                "minRequiredApprovers": 1,
                "instructions": "Check the endpoint tests",
                "blockedApprovers": [],
                "steps": [
                    {
                        "assignedApprover": {"id": approver, "displayName": f"User {n}"},
                        "status": status,
                        "order": n,
                    }
                    for n, approver in enumerate(approvers, start=1)
                ],
                # returned by the service, though not in the 7.1 spec
                "pipeline": {
                    "id": "13",
                    "name": pipeline,
                    "owner": {
                        "id": 1042,
                        "name": "20261123.7",
                        "_links": {"web": {"href": "https://dev.azure.com/x/mlops/_build?id=1042"}},
                    },
                },
            }
            return approval_id

    def request_approval(self, environment_name: str, run_id: int) -> dict[str, Any]:
        """The run reached a stage that deploys to ``environment_name``: the environment's
        Approval check makes it wait. Returns the new pending approval (a copy), with one step
        per approver the check names, as ``Approvals - Get`` with ``$expand=steps`` shows it.

        Follows the check's settings (``ApprovalConfig`` of the pipelinesChecks 7.1 spec):
        ``executionOrder`` (``inSequence``: only the first step is ``pending``, the others
        ``uninitiated`` until their turn, as the ``ApprovalStatus`` enum describes it),
        ``minRequiredApprovers`` (0: every approver), ``instructions``, ``blockedApprovers``,
        and ``requesterCannotBeApprover`` (the identity that started the run is blocked)."""
        with self._lock:
            environment = next(
                (
                    e
                    for e in self.environments
                    if e["name"].casefold() == environment_name.casefold()
                ),
                None,
            )
            if environment is None:
                raise ValueError(f"no environment {environment_name!r} in the stand-in")
            checks = [
                c
                for c in self.checks
                if c["resource"]["type"] == "environment"
                and str(c["resource"]["id"]) == str(environment["id"])
                and str(c["type"]["id"]).lower() == APPROVAL_CHECK_TYPE_ID
            ]
            if len(checks) != 1:
                raise ValueError(
                    f"environment {environment_name!r} has {len(checks)} Approval checks, not "
                    "one: nothing to wait for (run `smbridge ado setup` first)"
                )
            run = self._find_run(run_id)
            settings = checks[0].get("settings") or {}
            approvers = [self._identity_ref(a) for a in settings.get("approvers") or []]
            if not approvers:
                raise ValueError(f"the Approval check on {environment_name!r} has no approvers")
            order = _execution_order(settings.get("executionOrder", "anyOrder"))
            blocked = [self._identity_ref(b) for b in settings.get("blockedApprovers") or []]
            requester = self.run_requesters.get(run_id)
            if settings.get("requesterCannotBeApprover") and requester:
                blocked.append(self._identity_ref(requester))
            now = _now()
            approval_id = str(uuid.uuid4())
            self.approvals[approval_id] = {
                "id": approval_id,
                "status": "pending",
                "createdOn": now,
                "lastModifiedOn": now,
                "executionOrder": order,
                "minRequiredApprovers": int(settings.get("minRequiredApprovers") or 0),
                "instructions": str(settings.get("instructions") or ""),
                "blockedApprovers": blocked,
                "steps": [
                    {
                        "assignedApprover": approver,
                        "status": "pending" if order == "anyOrder" or n == 1 else "uninitiated",
                        "comment": "",
                        "order": n,
                        "initiatedOn": now,
                        "history": [],
                    }
                    for n, approver in enumerate(approvers, start=1)
                ],
                # returned by the service, though not in the 7.1 spec
                "pipeline": {
                    "id": str(run["pipelineId"]),
                    "name": self._pipeline_name(run["pipelineId"]),
                    "owner": {"id": run["id"], "name": run["name"], "_links": run["_links"]},
                },
            }
            self._changed.notify_all()
            return copy.deepcopy(self.approvals[approval_id])

    def approval(self, approval_id: str) -> dict[str, Any]:
        """A copy of one approval as the stand-in keeps it."""
        with self._lock:
            return copy.deepcopy(self.approvals[approval_id.lower()])

    def wait_for_decision(self, approval_id: str, timeout: float | None = None) -> str:
        """Block until the approval is no longer pending (or ``timeout`` seconds); its status."""
        with self._changed:
            self._changed.wait_for(
                lambda: self.approvals[approval_id.lower()]["status"] != "pending", timeout
            )
            return str(self.approvals[approval_id.lower()]["status"])

    def _identity_ref(self, ref: Mapping[str, Any]) -> dict[str, Any]:
        known = self.identities.get(str(ref.get("id", "")).lower()) or self.identities.get(
            str(ref.get("id", "")), {}
        )
        identity = {**known, "id": str(ref.get("id", ""))}
        identity["displayName"] = ref.get("displayName") or known.get("displayName") or ""
        return identity

    def _approval_view(
        self, approval: dict[str, Any], expand: str, base: str | None = None
    ) -> dict[str, Any]:
        view = approval if "steps" in expand else {**approval, "steps": []}
        if base is not None:
            # as in reference/ado-examples/approvals-GET__Approval.json
            href = f"{base}/{PROJECT_ID}/_apis/pipelines/approvals/{approval['id']}"
            view = {**view, "_links": {"self": {"href": href}}}
        return view

    def _approvals_query(self, request: StandInRequest) -> Result:
        query = request.query
        state = query.get("state", "all")
        ids = {i.strip().lower() for i in query.get("approvalIds", "").split(",") if i.strip()}
        users = {u.strip().lower() for u in query.get("userIds", "").split(",") if u.strip()}
        value = [
            self._approval_view(a, query.get("$expand", ""), request.organization_url)
            for a in self.approvals.values()
            if (state == "all" or a["status"] == state)
            and (not ids or a["id"] in ids)
            and (
                not users
                or any(
                    str(s["assignedApprover"]["id"]).lower() in users for s in a.get("steps", [])
                )
            )
        ]
        if "top" in query:
            value = value[: int(query["top"])]
        return 200, {}, json.dumps({"count": len(value), "value": value})

    def _approvals_get(self, request: StandInRequest) -> Result:
        approval_id = urlsplit(request.url).path.rsplit("/", 1)[-1]
        approval = self.approvals.get(approval_id.lower())
        if approval is None:
            return 404, {}, json.dumps({"message": f"Approval {approval_id} not found"})
        view = self._approval_view(
            approval, request.query.get("$expand", ""), request.organization_url
        )
        return 200, {}, json.dumps(view)

    def _approvals_update(self, request: StandInRequest) -> Result:
        """``Approvals - Update`` (reference/ado-examples/approvals-PATCH__UpdateApproval.json):
        the caller decides their own step; the approval is approved once enough steps are
        (``minRequiredApprovers``, 0 meaning all), rejected by any one rejection."""
        actor = dict(request.identity or self.admin)
        updated = []
        for item in json.loads(request.body or "[]"):
            approval = self.approvals.get(str(item["approvalId"]).lower())
            if approval is None:
                message = f"Approval {item['approvalId']} not found"
                return 404, {}, json.dumps({"message": message})
            if approval["status"] != "pending":
                message = f"The approval {item['approvalId']} is already completed."
                status = self.completed_approval_status
                return status, {}, json.dumps({"message": message, "typeKey": "ApprovalError"})
            decision = item.get("status")
            if decision not in ("approved", "rejected"):
                message = f"Status {decision!r} is not a decision: use approved or rejected."
                return 400, {}, service_error(message)
            step = self._actionable_step(approval, actor)
            if step is None:
                message = (
                    f"{actor.get('displayName') or actor['id']} is not an approver who can act "
                    f"on approval {approval['id']} now."
                )
                return 400, {}, service_error(message)
            self._decide(approval, step, actor, decision, str(item.get("comment", "")))
            updated.append(self._approval_view(approval, "steps", request.organization_url))
        return 200, {}, json.dumps({"count": len(updated), "value": updated})

    @staticmethod
    def _actionable_step(approval: dict[str, Any], actor: Mapping[str, Any]) -> Any:
        actor_id = str(actor["id"]).lower()
        if any(str(b.get("id", "")).lower() == actor_id for b in approval["blockedApprovers"]):
            return None
        return next(
            (
                s
                for s in approval["steps"]
                if str(s["assignedApprover"]["id"]).lower() == actor_id and s["status"] == "pending"
            ),
            None,
        )

    @staticmethod
    def _decide(
        approval: dict[str, Any],
        step: dict[str, Any],
        actor: dict[str, Any],
        decision: str,
        comment: str,
    ) -> None:
        now = _now()
        step.update(
            status=decision,
            comment=comment,
            actualApprover=actor,
            lastModifiedBy=actor,
            lastModifiedOn=now,
        )
        approval["lastModifiedOn"] = now
        steps = approval["steps"]
        approved = sum(1 for s in steps if s["status"] == "approved")
        required = approval.get("minRequiredApprovers") or len(steps)
        if decision == "rejected":
            approval["status"] = "rejected"
        elif approved >= required:
            approval["status"] = "approved"
        else:
            waiting = next((s for s in steps if s["status"] == "uninitiated"), None)
            if waiting is not None:  # inSequence: the next approver's turn
                waiting.update(status="pending", initiatedOn=now)


def _oidc_token(self: AzureDevOpsStandIn, request: StandInRequest) -> Result:
    """``Oidctoken_Create`` (distributedTask 7.1 spec): a job's OIDC token, for a service
    connection when ``serviceConnectionId`` is given. Its claims follow Microsoft's workload
    identity federation docs: issuer ``https://vstoken.dev.azure.com/{organization id}``,
    subject ``sc://{org}/{project}/{connection name}`` (``p://{org}/{project}/{pipeline}``
    without a connection), audience ``api://AzureADTokenExchange``. The signature is not a real
    one (moto's STS does not verify it). An unknown connection id is a 400 here; the service's
    wording for it is not recorded."""
    _, org, scope = request.path_parts[:3]  # /{organization}/{scopeIdentifier}/_apis/…
    project = self.project_names.get(scope, scope)
    connection_id = request.query.get("serviceConnectionId")
    if connection_id:
        name = self.service_connections.get(connection_id.lower())
        if name is None:
            message = f"service connection {connection_id} was not found or is not authorized"
            return 400, {}, service_error(message)
        subject = f"sc://{org}/{project}/{name}"
    else:
        subject = f"p://{org}/{project}/{self.pipeline_names.get(min(self.pipelines), 'pipeline')}"
    now = int(time.time())
    claims = {
        "iss": self.oidc_issuer,
        "sub": subject,
        "aud": "api://AzureADTokenExchange",
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
    }
    claims.update(self.oidc_claims)
    claims = {name: value for name, value in claims.items() if value is not None}
    token = (
        ".".join(
            base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=")
            for part in ({"alg": "RS256", "typ": "JWT"}, claims)
        )
        + f".{OIDC_SIGNATURE}"
    )
    return 200, {}, json.dumps({"oidcToken": token})


def _pipelines_get(self: AzureDevOpsStandIn, request: StandInRequest) -> Result:
    """``Pipelines_Get`` (pipelines 7.1 spec, ``Pipeline``: ``id``, ``name``, ``folder``,
    ``revision``, ``url``, ``_links``, ``configuration``). The spec's ``PipelineConfiguration``
    declares only ``type``; for a YAML pipeline the service also returns the YAML's ``path`` and
    its ``repository`` (what bridge/doctor/lookups.py reads). The 404's wording is not recorded."""
    project, pipeline_id = request.project, int(request.path_parts[5])
    if pipeline_id not in self.pipelines:
        return 404, {}, service_error(f"Pipeline {pipeline_id} not found.")
    base, quoted = request.organization_url, quote(project, safe="")
    url = f"{base}/{quoted}/_apis/pipelines/{pipeline_id}?revision=1"
    pipeline = {
        "_links": {
            "self": {"href": url},
            "web": {"href": f"{base}/{quoted}/_build/definition?definitionId={pipeline_id}"},
        },
        "configuration": {
            "path": self.pipeline_paths.get(pipeline_id, MODEL_DEPLOY_YAML),
            "repository": {"id": self.repository_id, "type": "azureReposGit"},
            "type": "yaml",
        },
        "url": url,
        "id": pipeline_id,
        "revision": 1,
        "name": self._pipeline_name(pipeline_id),
        "folder": "\\",
    }
    return 200, {}, json.dumps(pipeline)


def _endpoints_get(self: AzureDevOpsStandIn, request: StandInRequest) -> Result:
    """``Endpoints_Get`` (reference/ado-openapi-serviceEndpoint-7.1-endpoints.json,
    ``ServiceEndpoint``): each of ``service_connections`` as an Azure Resource Manager connection
    with workload identity federation, ready, its issuer and subject those of the tokens
    ``Oidctoken_Create`` issues for it. The shape follows the spec repository's recorded
    ``Create Azure RM service endpoint`` answer (serviceEndpoint/7.2/httpExamples/endpoints/
    CreateAzureRMEndpoint.json) with the WorkloadIdentityFederation scheme and the
    ``workloadIdentityFederationIssuer`` / ``…Subject`` parameters docs/credentials.md reads.
    An id that names no connection gets a 200 with an empty body, not a 404
    (MicrosoftDocs/vsts-rest-api-specs#285); an id that is not a GUID a 400 (the spec's
    ``format: uuid``; the service's wording is not recorded)."""
    organization, project = unquote(request.path_parts[1]), request.project
    endpoint_id = unquote(request.path_parts[-1])
    try:
        uuid.UUID(endpoint_id)
    except ValueError:
        return 400, {}, service_error(f"The endpoint id {endpoint_id!r} is not a valid GUID.")
    endpoint_id = endpoint_id.lower()
    name = self.service_connections.get(endpoint_id)
    if name is None:
        return 200, {}, ""
    project_name = self.project_names.get(project, project)
    project_id = next(
        (pid for pid, pname in self.project_names.items() if pname == project_name), PROJECT_ID
    )
    endpoint = {
        "data": {
            "environment": "AzureCloud",
            "scopeLevel": "ResourceGroup",
            "creationMode": "Automatic",
        },
        "id": endpoint_id,
        "name": name,
        "type": "AzureRM",
        "url": "https://management.azure.com/",
        "createdBy": {"id": self.admin["id"], "displayName": self.admin["displayName"]},
        "authorization": {
            "parameters": {
                "tenantid": TENANT_ID,
                "serviceprincipalid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"sc/{endpoint_id}")),
                "workloadIdentityFederationIssuer": self.oidc_issuer,
                "workloadIdentityFederationSubject": f"sc://{organization}/{project_name}/{name}",
            },
            "scheme": "WorkloadIdentityFederation",
        },
        "isShared": False,
        "isReady": True,
        "owner": "library",
        "serviceEndpointProjectReferences": [
            {"projectReference": {"id": project_id, "name": project_name}, "name": name}
        ],
    }
    return 200, {}, json.dumps(endpoint)


ADMIN_HANDLERS: dict[str, Handler] = {
    "Oidctoken_Create": _oidc_token,
    "Pipelines_Get": _pipelines_get,
    "Endpoints_Get": _endpoints_get,
    "Environments_List": AzureDevOpsStandIn._environments_list,
    "Environments_Add": AzureDevOpsStandIn._environments_add,
    "Check Configurations_List": AzureDevOpsStandIn._checks_list,
    "Check Configurations_Add": AzureDevOpsStandIn._checks_add,
    "Check Configurations_Update": AzureDevOpsStandIn._checks_update,
    "Pipeline Permissions_Get": AzureDevOpsStandIn._permissions_get,
    "Pipeline Permissions_Update Pipeline Permisions For Resource": (
        AzureDevOpsStandIn._permissions_update
    ),
    "Approvals_Query": AzureDevOpsStandIn._approvals_query,
    "Approvals_Get": AzureDevOpsStandIn._approvals_get,
    "Approvals_Update": AzureDevOpsStandIn._approvals_update,
}


def _basic_password(header: str) -> str | None:
    """The password of ``Basic base64(user:password)``; a PAT goes there with any user name
    (Microsoft docs, "Use personal access tokens": the user name may be empty)."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _, sep, password = decoded.partition(":")
    return password if sep else None


def _execution_order(value: Any) -> str:
    """ApprovalExecutionOrder: a name, or the enum's number (1 anyOrder, 2 inSequence), as a
    check made by another client may carry it (bridge/azure_devops/environments.py)."""
    if value in (2, "2", "inSequence"):
        return "inSequence"
    return "anyOrder"


def _web_url(base: str, project: str, run_id: int) -> str:
    # the run's page (_links.web of a Run); the shape the tests have always pinned
    return f"{base}/{quote(project, safe='')}/_build?id={run_id}"


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
