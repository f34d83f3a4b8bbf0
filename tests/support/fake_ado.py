"""The Azure DevOps stand-in (bridge/sandbox/azure_devops.py) on ``responses``.

The state and the answers live in :class:`bridge.sandbox.azure_devops.AzureDevOpsStandIn`
(runs, builds, environments, checks, approvals, pipeline permissions, faults, 401/203 for a
refused credential, every request held against the OpenAPI specs in reference/); this module
only hands it the requests ``requests`` sends to ``https://dev.azure.com/...``. Differences from
the HTTP server (bridge/sandbox/ado_server.py): a request that breaks the contract raises
(``ContractViolation``, an ``AssertionError``) in the test instead of getting a 400, and an
injected time-out or broken connection raises the ``requests`` exception at once.

``_ADMIN_HANDLERS`` is looked up at each request, so a test may swap one operation's handler
(``monkeypatch.setattr(fake_ado, "_ADMIN_HANDLERS", {...})``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import requests
import responses

from bridge.sandbox.azure_devops import (
    ADMIN_HANDLERS,
    ADMIN_ID,
    SIGN_IN_PAGE,
    AzureDevOpsStandIn,
    Fault,
    Handler,
    TransportFault,
    declared_parameters,
)

__all__ = ["ADMIN_ID", "DECLARED_PARAMETERS", "SIGN_IN_PAGE", "FakeAzureDevOps", "Fault"]

# What azure-pipelines/model-deploy.yml declares (read from it): the service answers 400 to
# anything else.
DECLARED_PARAMETERS = declared_parameters()
_ADMIN_HANDLERS: dict[str, Handler] = dict(ADMIN_HANDLERS)


class FakeAzureDevOps(AzureDevOpsStandIn):
    """The stand-in, installed on a ``responses.RequestsMock`` with :meth:`install`."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.raise_violations = True  # a broken request fails the test where it was sent

    def install(self, mock: responses.RequestsMock) -> FakeAzureDevOps:
        pattern = re.compile(r"https://dev\.azure\.com/.*")
        for method in ("GET", "POST", "PATCH", "PUT", "DELETE"):
            mock.add_callback(method, pattern, callback=self._handle, content_type=None)
        return self

    def _admin_handlers(self) -> Mapping[str, Handler]:
        return _ADMIN_HANDLERS

    def _handle(self, request: Any) -> tuple[int, dict[str, str], bytes]:
        try:
            answer = self.handle(request.method, request.url, request.headers, request.body)
        except TransportFault as fault:
            if fault.kind == "timeout":
                raise requests.ReadTimeout("read timed out") from None
            raise requests.ConnectionError("connection reset by peer") from None
        return answer.status, answer.headers, answer.body
