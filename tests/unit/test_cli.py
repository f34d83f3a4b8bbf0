"""The CLI end to end in-process: dry runs make no call, exit codes, agent and JSON output."""

from __future__ import annotations

import json
from pathlib import Path

import botocore.client
import botocore.endpoint
import pytest
from moto import mock_aws

from bridge.cli.app import main

ROLE = "arn:aws:iam::123456789012:role/exec"
REPO_ROOT = Path(__file__).resolve().parents[2]
# A well-formed ARN (botocore's model pattern): the requests are held to it (tests/conftest.py)
EXECUTION_ARN = "arn:aws:sagemaker:eu-west-1:123456789012:pipeline/p/execution/abc123"
STAGING = str(REPO_ROOT / "model-deploy" / "config" / "staging.json")
TEMPLATES = str(REPO_ROOT / "model-deploy" / "templates")
PAYLOAD = str(REPO_ROOT / "model-deploy" / "tests" / "payload.csv")
PACKAGE = "arn:aws:sagemaker:eu-west-1:123456789012:model-package/smbridge-demo/3"
DEFINITION = {
    "Version": "2020-12-01",
    "Parameters": [{"Name": "AucThreshold", "Type": "Float", "DefaultValue": 0.9}],
    "Steps": [{"Name": "Fail", "Type": "Fail", "Arguments": {"ErrorMessage": "x"}}],
}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "definition.json").write_text(json.dumps(DEFINITION))
    (tmp_path / "bridge.yaml").write_text(
        "region: eu-west-1\n"
        "model_package_group: demo-group\n"
        "pipeline:\n"
        "  name: demo\n"
        "  definition: definition.json\n"
        f"  execution_role_arn: {ROLE}\n"
        "  artifact_bucket: artifacts\n"
    )
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(autouse=True)
def moto_lists_no_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto lacks ListPipelineExecutionSteps (its executions succeed at once): answer with none."""
    from moto.sagemaker.responses import SageMakerResponse

    monkeypatch.setattr(
        SageMakerResponse,
        "list_pipeline_execution_steps",
        lambda self: json.dumps({"PipelineExecutionSteps": []}),
        raising=False,
    )


@pytest.fixture
def no_aws_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record (and refuse) anything that would reach botocore's transport."""
    attempts: list[str] = []

    def refuse_call(self, operation_name, api_params):
        attempts.append(operation_name)
        raise AssertionError(f"dry run made an AWS call: {operation_name}")

    def refuse_request(self, operation_model, request_dict):
        attempts.append(operation_model.name)
        raise AssertionError(f"dry run sent a request: {operation_model.name}")

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", refuse_call)
    monkeypatch.setattr(botocore.endpoint.Endpoint, "make_request", refuse_request)
    return attempts


@pytest.mark.parametrize(
    "argv",
    [
        ["pipeline", "upsert", "--dry-run"],
        ["pipeline", "start", "--dry-run", "--param", "AucThreshold=0.8", "--wait"],
        ["pipeline", "status", "--dry-run"],
        ["pipeline", "status", "--dry-run", "--execution-arn", EXECUTION_ARN],
        ["pipeline", "stop", "--dry-run", "--execution-arn", EXECUTION_ARN],
        ["pipeline", "upsert", "--dry-run", "--role-arn", "arn:aws:iam::123456789012:role/ci"],
        ["prepare", "--dry-run", "--group", "g", "--out", "o", "--stage-config", STAGING],
        ["deploy", "--dry-run", "--stage", "staging", "--model-package-arn", PACKAGE,
         "--stage-config", STAGING, "--templates-dir", TEMPLATES],
        ["registry", "latest", "--dry-run", "--group", "g"],
        ["registry", "describe", "--dry-run", PACKAGE],
        ["registry", "approve", "--dry-run", PACKAGE, "--comment", "looks good"],
        ["endpoint", "test", "--dry-run", "--endpoint", "e", "--stage-config", STAGING,
         "--payload", PAYLOAD, "--expect", PAYLOAD.replace("payload.csv", "expect.json")],
    ],
)  # fmt: skip
def test_dry_runs_make_no_aws_call(project, no_aws_calls, capsys, argv):
    assert main(argv) == 0
    assert no_aws_calls == []
    out = capsys.readouterr().out
    assert "sagemaker" in out


def test_the_guard_itself_catches_calls(project, no_aws_calls):
    """Without --dry-run the same command does reach botocore: the guard can fail."""
    assert main(["pipeline", "status", "--execution-arn", EXECUTION_ARN]) == 1
    assert no_aws_calls == ["DescribePipelineExecution"]


def test_dry_run_web_identity_needs_no_token(project, no_aws_calls, monkeypatch):
    monkeypatch.setenv("SYSTEM_OIDCREQUESTURI", "https://example.invalid/oidc")
    monkeypatch.setenv("SYSTEM_ACCESSTOKEN", "secret-token-value")
    assert main(["pipeline", "start", "--dry-run", "--web-identity"]) == 0
    assert no_aws_calls == []


def test_upsert_dry_run_plan_in_json(project, no_aws_calls, capsys):
    assert main(["pipeline", "upsert", "--dry-run", "--output", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["dry_run"] is True
    operations = [c["operation"] for c in document["steps"]]
    assert operations == ["DescribePipeline", "CreatePipeline", "UpdatePipeline", "AddTags"]


def test_unknown_config_key_exits_2_with_one_line(project, capsys):
    (project / "bridge.yaml").write_text("pipeline:\n  nmae: demo\n")
    assert main(["pipeline", "status"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "error: bridge.yaml: unknown key 'pipeline.nmae'; remove it or check its spelling; "
        "did you mean 'name'? (`smbridge config show` lists every key)"
    )


def test_a_typo_in_a_nested_variable_names_the_variable(project, capsys, monkeypatch):
    monkeypatch.setenv("SMBRIDGE_PIPELNE__NAME", "demo")
    assert main(["pipeline", "status"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: SMBRIDGE_PIPELNE__NAME: unknown key 'pipelne'")
    assert "did you mean 'pipeline'?" in err


def test_usage_errors_are_one_line(project, capsys):
    with pytest.raises(SystemExit) as info:
        main(["pipeline", "start", "--bogus"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: smbridge: unrecognized arguments: --bogus (see 'smbridge --help')"


def test_bad_param_syntax_exits_2(project, capsys):
    assert main(["pipeline", "start", "--dry-run", "--param", "novalue"]) == 2
    assert "expected NAME=VALUE" in capsys.readouterr().err


def test_missing_setting_names_key_and_flag(project, capsys):
    (project / "bridge.yaml").write_text("region: eu-west-1\n")
    assert main(["pipeline", "upsert", "--dry-run"]) == 2
    assert "pipeline.name is not set: add it to bridge.yaml or pass --pipeline-name" in (
        capsys.readouterr().err
    )


def test_timeout_needs_wait(project, capsys):
    assert main(["pipeline", "start", "--timeout", "1h"]) == 2
    assert "--timeout needs --wait" in capsys.readouterr().err


def test_bad_timeout(project, capsys):
    assert main(["pipeline", "start", "--wait", "--timeout", "soon", "--dry-run"]) == 2
    assert "expected a duration like 6h" in capsys.readouterr().err


def test_upsert_on_agent_uses_logging_commands_and_output_variables(project, monkeypatch, capsys):
    monkeypatch.setenv("TF_BUILD", "True")
    monkeypatch.setenv("BUILD_BUILDID", "314")
    monkeypatch.setenv("BUILD_REPOSITORY_NAME", "model-build")
    monkeypatch.setenv("BUILD_SOURCEVERSION", "0123abcd")
    with mock_aws():
        assert main(["pipeline", "upsert"]) == 0
        out = capsys.readouterr().out
        assert "##[group]Upsert SageMaker pipeline demo" in out
        assert "##[endgroup]" in out
        arn = "arn:aws:sagemaker:eu-west-1:123456789012:pipeline/demo"
        assert f"##vso[task.setvariable variable=pipelineArn;isoutput=true]{arn}" in out
        assert "##vso[task.setvariable variable=pipelineAction;isoutput=true]created" in out
        assert main(["pipeline", "upsert"]) == 0
        assert "pipelineAction;isoutput=true]unchanged" in capsys.readouterr().out


def test_errors_on_agent_are_logissue_lines(project, monkeypatch, capsys):
    monkeypatch.setenv("TF_BUILD", "True")
    with mock_aws():
        assert main(["pipeline", "start", "--param", "Nope=1"]) == 2
    out = capsys.readouterr().out
    assert "##vso[task.logissue type=error]" in out
    assert "does not exist" in out


def test_start_unknown_parameter_against_moto(project, capsys):
    with mock_aws():
        assert main(["pipeline", "upsert"]) == 0
        assert main(["pipeline", "start", "--param", "Threshold=0.5"]) == 2
        err = capsys.readouterr().err
        assert "--param Threshold: the pipeline declares no such parameter" in err
        assert "AucThreshold" in err
        assert main(["pipeline", "start", "--param", "AucThreshold=0.5", "--wait"]) == 0


def test_json_output_is_one_document(project, capsys):
    with mock_aws():
        main(["pipeline", "upsert"])
        capsys.readouterr()
        assert main(["pipeline", "start", "--output", "json", "--wait"]) == 0
        captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert document["status"] == "Succeeded"
    assert document["execution_arn"].startswith("arn:aws:sagemaker:eu-west-1:")
    assert "started" in captured.err  # progress goes to stderr


def test_no_credentials_is_exit_6(project, monkeypatch, capsys):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    assert main(["pipeline", "status", "--execution-arn", EXECUTION_ARN]) == 6
    assert "no AWS credentials" in capsys.readouterr().err


def test_debug_shows_traceback_otherwise_not(project, capsys):
    (project / "bridge.yaml").write_text("region: nowhere\n")
    assert main(["pipeline", "status"]) == 2
    assert "Traceback" not in capsys.readouterr().err
    assert main(["pipeline", "status", "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["deploy", "--stage", "staging", "--model-package-arn", "arn:aws:s3:::x",
          "--stage-config", STAGING, "--dry-run"], 2, "expected arn:aws:sagemaker"),
        (["deploy", "--stage", "staging", "--model-package-arn", PACKAGE,
          "--stage-config", "missing.json", "--dry-run"], 2, "stage config not found"),
        (["prepare", "--out", "o"], 2, "one of the arguments"),
        (["registry", "approve", PACKAGE, "--comment", " ", "--dry-run"], 2, "is required"),
        (["endpoint", "test", "--endpoint", "e", "--payload", "nope.csv"], 2, "file not found"),
    ],
)  # fmt: skip
def test_deploy_side_input_errors(project, capsys, argv, code, message):
    try:
        assert main(argv) == code
    except SystemExit as exc:  # argparse's own usage errors
        assert exc.code == code
    captured = capsys.readouterr()
    assert message in captured.err
    assert "Traceback" not in captured.err


def test_a_repeated_param_is_an_error(project, capsys):
    code = main(
        [
            "pipeline",
            "start",
            "--param",
            "AucThreshold=0.8",
            "--param",
            "AucThreshold=0.9",
            "--dry-run",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: --param AucThreshold is given more than once; give each parameter once")


@pytest.mark.parametrize(
    ("param", "message"),
    [
        (
            "Nope=1",
            "--param Nope: the pipeline declares no such parameter (declared: AucThreshold)",
        ),
        ("AucThreshold=high", "--param AucThreshold='high': expected a float value"),
    ],
)
def test_a_dry_run_checks_params_against_the_built_definition(project, capsys, param, message):
    """The project's pipeline.definition is a .json file: the dry run checks against it offline,
    as StartPipelineExecution would against the deployed definition (same check, same words)."""
    assert main(["pipeline", "start", "--dry-run", "--param", param]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err
        == f"error: {message} (checked against definition.json; rebuild it if the pipeline changed)"
    )


def test_a_dry_run_uses_the_quick_starts_built_file_and_says_when_it_has_none(
    project, capsys, monkeypatch
):
    bridge_yaml = project / "bridge.yaml"
    bridge_yaml.write_text(
        bridge_yaml.read_text().replace("definition.json", "model_build.pipeline:get_pipeline")
    )
    assert main(["pipeline", "start", "--dry-run", "--param", "Nope=1"]) == 0
    assert "parameters not checked offline: no built definition" in capsys.readouterr().err
    (project / "build").mkdir()
    (project / "build" / "pipeline-definition.json").write_text(json.dumps(DEFINITION))
    assert main(["pipeline", "start", "--dry-run", "--param", "Nope=1"]) == 2
    assert "checked against build/pipeline-definition.json" in capsys.readouterr().err
    assert main(["pipeline", "start", "--dry-run", "--param", "AucThreshold=0.7"]) == 0
    assert main(["pipeline", "start", "--dry-run", "--definition-file", "missing.json"]) == 2
    assert "--definition-file missing.json: No such file or directory" in capsys.readouterr().err
