"""Every failure is one line with its documented exit code, and never shows a secret."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import botocore.endpoint
import pytest
import responses
from botocore.exceptions import EndpointConnectionError

from bridge.cli.app import main
from bridge.sandbox.ado_contract import REFERENCE_DIR
from bridge.settings.bridge_config import load_config

EVENT = str(REFERENCE_DIR / "sagemaker-events" / "model-package-approved.json")
EXECUTION = "arn:aws:sagemaker:eu-west-1:123456789012:pipeline/demo/execution/abc"


@pytest.fixture(autouse=True)
def empty_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bridge.yaml").write_text("region: eu-west-1\npipeline:\n  name: demo\n")
    return tmp_path


@pytest.mark.parametrize(
    "argv",
    [
        ["pipeline", "start"],
        ["pipeline", "status", "--execution-arn", EXECUTION],
        ["registry", "latest", "--group", "g"],
        ["registry", "describe", "arn:aws:sagemaker:eu-west-1:123456789012:model-package/g/1"],
    ],
)
def test_no_credentials_is_exit_6_everywhere(monkeypatch, capsys, argv):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    assert main(argv) == 6
    err = capsys.readouterr().err
    assert "no AWS credentials" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "argv",
    [["pipeline", "start"], ["registry", "latest", "--group", "g"], ["pipeline", "status"]],
)
def test_network_failure_is_exit_3_in_one_line(monkeypatch, capsys, argv):
    def unreachable(self, operation_model, request_dict):
        raise EndpointConnectionError(endpoint_url="https://api.sagemaker.eu-west-1.amazonaws.com")

    monkeypatch.setattr(botocore.endpoint.Endpoint, "make_request", unreachable)
    assert main(argv) == 3
    err = capsys.readouterr().err.strip()
    assert "Could not connect to the endpoint URL" in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("region", ["mars-1", "EU-WEST-1"])
def test_bad_region_flag(capsys, region):
    assert main(["pipeline", "status", "--region", region, "--dry-run"]) == 2
    assert "expected an AWS region like eu-west-1" in capsys.readouterr().err


def test_env_overrides_keep_leading_zeros(empty_dir):
    config = load_config(
        empty_dir / "bridge.yaml", environ={"SMBRIDGE_MODEL_REGISTRY__ACCOUNT_ID": "012345678901"}
    )
    assert config.model_registry.account_id == "012345678901"


def test_describe_dry_run_checks_the_arn(capsys):
    assert main(["registry", "describe", "not-an-arn", "--dry-run"]) == 2
    assert "ARN 'not-an-arn': expected arn:aws:sagemaker" in capsys.readouterr().err


def test_prepare_dry_run_checks_the_arn_and_account(empty_dir, capsys):
    (empty_dir / "bridge.yaml").write_text(
        "region: eu-west-1\nmodel_registry:\n  account_id: '111111111111'\n"
    )
    staging = str(Path(__file__).resolve().parents[2] / "model-deploy/config/staging.json")
    foreign = "arn:aws:sagemaker:eu-west-1:999999999999:model-package/g/1"
    argv = ["prepare", "--dry-run", "--out", "o", "--stage-config", staging]
    assert main([*argv, "--model-package-arn", foreign]) == 2
    assert "account 999999999999 is not the model registry's" in capsys.readouterr().err


SECRET = "ECHOED-PAT-SENTINEL-55"


@responses.activate
def test_an_echoed_credential_is_masked(empty_dir, capsys, monkeypatch):
    """A proxy or service that repeats the request's Authorization header in its error."""

    def echo(request):
        body = {"message": f"denied for {request.headers['Authorization']}"}
        return 403, {}, json.dumps(body)

    responses.add_callback(
        "POST", "https://dev.azure.com/contoso/mlops/_apis/pipelines/12/runs", callback=echo
    )
    routes = empty_dir / "routes.json"
    routes.write_text(
        json.dumps({"default": {"organization": "contoso", "project": "mlops", "pipelineId": 12}})
    )
    monkeypatch.setenv("SMBRIDGE_ADO_PAT", SECRET)
    code = main(["trigger", "simulate", "--event", EVENT, "--routes", str(routes), "--debug"])
    assert code == 3
    captured = capsys.readouterr()
    everything = captured.out + captured.err
    assert "denied for" in everything  # the service's message is shown...
    assert SECRET not in everything  # ...without the credential, even with --debug
    assert base64.b64encode(f":{SECRET}".encode()).decode() not in everything


def test_plain_http_organizations_are_refused(empty_dir, capsys, monkeypatch):
    routes = empty_dir / "routes.json"
    routes.write_text(
        json.dumps(
            {"default": {"organization": "http://ado.example.com/contoso", "project": "p",
                         "pipelineId": 1}}
        )
    )  # fmt: skip
    monkeypatch.setenv("SMBRIDGE_ADO_PAT", SECRET)
    assert main(["trigger", "simulate", "--event", EVENT, "--routes", str(routes)]) == 2
    assert "use https://" in capsys.readouterr().err


@responses.activate
def test_simulate_json_output_is_one_document(empty_dir, capsys, monkeypatch):
    responses.post(
        "https://dev.azure.com/contoso/mlops/_apis/pipelines/12/runs",
        json={"id": 5, "name": "r", "state": "inProgress"},
    )
    routes = empty_dir / "routes.json"
    routes.write_text(
        json.dumps({"default": {"organization": "contoso", "project": "mlops", "pipelineId": 12}})
    )
    monkeypatch.setenv("SMBRIDGE_ADO_PAT", SECRET)
    argv = ["trigger", "simulate", "--event", EVENT, "--routes", str(routes), "--output", "json"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["status"] == "started"
    assert '"level":"INFO"' in captured.err  # the Lambda's structured logs went to stderr


def test_missing_ado_credential_is_exit_6(empty_dir, capsys):
    routes = empty_dir / "routes.json"
    routes.write_text(
        json.dumps({"default": {"organization": "c", "project": "p", "pipelineId": 1}})
    )
    assert main(["trigger", "simulate", "--event", EVENT, "--routes", str(routes)]) == 6
    assert "SMBRIDGE_ADO_PAT" in capsys.readouterr().err
