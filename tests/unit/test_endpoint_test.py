"""smbridge endpoint test against an endpoint stand-in serving the real trained model."""

from __future__ import annotations

import io
from pathlib import Path
from xml.etree import ElementTree

import boto3
import pytest

from bridge.core.output import Reporter
from bridge.deploy.endpoint_test import (
    Expectations,
    load_expectations,
    load_payload,
    run_endpoint_test,
    write_junit,
)
from tests.support.fake_endpoint import FakeEndpoint, train_model

REPO_ROOT = Path(__file__).resolve().parents[2]
PAYLOAD = REPO_ROOT / "model-deploy" / "tests" / "payload.csv"
EXPECT = REPO_ROOT / "model-deploy" / "tests" / "expect.json"


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    return train_model(tmp_path_factory.mktemp("model"))


@pytest.fixture
def endpoint(model_file):
    fake = FakeEndpoint(model_file)
    client = fake.attach(boto3.client("sagemaker-runtime", region_name="eu-west-1"))
    return fake, client


def run(client, fake, expect=None, rows=None):
    out = io.StringIO()
    report = run_endpoint_test(
        client,
        fake.name,
        rows or load_payload(PAYLOAD),
        expect or load_expectations(EXPECT),
        reporter=Reporter("text", out=out, err=io.StringIO()),
    )
    return report, out.getvalue()


@pytest.mark.slow
def test_real_model_passes_the_shipped_expectations(endpoint):
    fake, client = endpoint
    report, text = run(client, fake)
    assert report.passed, text
    assert len(fake.requests) == 20  # one real invocation per row
    assert {c.name for c in report.checks} >= {"accuracy >= 0.85", "latency p95 <= 1000 ms"}
    assert all(0 <= values[0] <= 1 for values in report.predictions)
    assert "PASS" in text


@pytest.mark.slow
@pytest.mark.parametrize(
    ("transform", "failing"),
    [
        (lambda text: text.replace("\n", ",0.5\n") + ",0.5", "1 value(s) per row"),
        (lambda text: "\n".join(str(float(v) * 10) for v in text.split()), "values within"),
        (lambda text: "\n".join(str(1 - float(v)) for v in text.split()), "accuracy"),
        (lambda text: "not-a-number", "1 value(s) per row"),
    ],
)
def test_broken_answers_fail_the_right_check(endpoint, transform, failing):
    fake, client = endpoint
    fake.transform = transform
    report, _ = run(client, fake)
    assert not report.passed
    failed = [c.name for c in report.checks if not c.passed]
    assert any(name.startswith(failing) for name in failed), failed


@pytest.mark.slow
def test_model_errors_and_latency_budget(endpoint):
    fake, client = endpoint
    fake.status = 500
    report, _ = run(client, fake)
    assert not report.checks[0].passed and "HTTP 424" in report.checks[0].detail
    fake.status = 200
    ticks = iter(range(0, 10_000, 2))  # every call "takes" 2 s on this clock
    tight = Expectations(latency_p95_ms=1500)
    report = run_endpoint_test(
        client, fake.name, load_payload(PAYLOAD), tight,
        reporter=Reporter("text", out=io.StringIO()), monotonic=lambda: next(ticks),
    )  # fmt: skip
    latency = next(c for c in report.checks if c.name.startswith("latency"))
    assert not latency.passed
    assert "p95 2000 ms" in latency.detail


@pytest.mark.slow
def test_junit_report(endpoint, tmp_path):
    fake, client = endpoint
    fake.transform = lambda text: "\n".join(str(1 - float(v)) for v in text.split())
    report, _ = run(client, fake)
    target = tmp_path / "results" / "endpoint.xml"
    write_junit(report, target)
    suite = ElementTree.parse(target).getroot()
    assert suite.get("tests") == str(len(report.checks))
    assert suite.get("failures") == "1"
    assert len(suite.findall("testcase/failure")) == 1


def test_payload_and_expectation_errors(tmp_path):
    from bridge.errors import ConfigError, UserError

    with pytest.raises(UserError, match="file not found"):
        load_payload(tmp_path / "missing.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("# only a comment\n")
    with pytest.raises(UserError, match="no rows"):
        load_payload(empty)
    bad = tmp_path / "expect.json"
    bad.write_text('{"latency_p95": 10}')
    with pytest.raises(ConfigError, match="latency_p95"):
        load_expectations(bad)
