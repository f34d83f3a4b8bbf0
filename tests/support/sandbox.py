"""The sandbox as pytest fixtures, for end-to-end and fault-injection tests: moto's server and
the Azure DevOps stand-in over HTTP, both on loopback (bridge/sandbox/). Use them with
``pytest_plugins = ["tests.support.sandbox"]`` or by importing the fixtures.

* ``aws_sandbox``: :class:`bridge.sandbox.aws.AwsEmulator`; ``os.environ`` points botocore at it
  for the test, and moto forgets everything afterwards.
* ``ado_stand_in``: an :class:`~bridge.sandbox.azure_devops.AzureDevOpsStandIn` whose pipelines
  declare model-deploy.yml's parameters (it reads the YAML), with its PAT ``ado_pat``.
* ``ado_server``: that stand-in served on ``http://127.0.0.1:PORT/``; the test fails if any
  request broke the OpenAPI contract.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bridge.sandbox.ado_server import AzureDevOpsServer
from bridge.sandbox.aws import AwsEmulator, aws_emulator
from bridge.sandbox.azure_devops import AzureDevOpsStandIn

ADO_PAT = "sandbox-fixture-pat-not-real"


@pytest.fixture
def aws_sandbox() -> Iterator[AwsEmulator]:
    with aws_emulator() as emulator:
        yield emulator


@pytest.fixture
def ado_stand_in() -> AzureDevOpsStandIn:
    return AzureDevOpsStandIn.for_pipeline_yaml(pat=ADO_PAT)


@pytest.fixture
def ado_server(ado_stand_in: AzureDevOpsStandIn) -> Iterator[AzureDevOpsServer]:
    with AzureDevOpsServer(ado_stand_in) as server:
        yield server
    assert ado_stand_in.violations == [], "requests broke the Azure DevOps OpenAPI contract"
