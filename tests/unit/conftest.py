from __future__ import annotations

from typing import Any

import boto3
import pytest

from tests.support.fakes import FakeClock, FakeSageMaker, StaticClients


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake_sagemaker(clock: FakeClock) -> FakeSageMaker:
    return FakeSageMaker(clock)


@pytest.fixture
def sagemaker_client(fake_sagemaker: FakeSageMaker) -> Any:
    client = boto3.client("sagemaker", region_name="eu-west-1")
    return fake_sagemaker.attach(client)


@pytest.fixture
def fake_clients(sagemaker_client: Any) -> StaticClients:
    return StaticClients(sagemaker=sagemaker_client)
