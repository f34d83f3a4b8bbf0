"""Pay only for what you use: commands that talk to AWS by name never import the SageMaker SDK."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import contextlib, io, json, sys
from moto import mock_aws
from moto.sagemaker.responses import SageMakerResponse
# moto lacks these two operations; answer them minimally (the point here is what gets imported).
SageMakerResponse.list_pipeline_execution_steps = lambda self: '{"PipelineExecutionSteps": []}'
SageMakerResponse.stop_pipeline_execution = lambda self: json.dumps(
    {"PipelineExecutionArn": self._get_param("PipelineExecutionArn")})
import boto3
from bridge.cli.app import main
argv = json.loads(sys.argv[1])
with mock_aws():
    sm = boto3.client("sagemaker", region_name="eu-west-1")
    sm.create_pipeline(PipelineName="demo", RoleArn="arn:aws:iam::123456789012:role/r",
        PipelineDefinition='{"Version":"2020-12-01","Parameters":[],"Steps":[{"Name":"F","Type":"Fail"}]}')
    arn = sm.start_pipeline_execution(PipelineName="demo")["PipelineExecutionArn"]
    argv = [a.replace("EXEC_ARN", arn) for a in argv]
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
loaded = sorted(m for m in sys.modules if m == "sagemaker" or m.startswith("sagemaker."))
print(json.dumps({"code": code, "sagemaker_modules": loaded[:5]}))
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["pipeline", "start", "--pipeline-name", "demo", "--region", "eu-west-1", "--wait"],
        ["pipeline", "status", "--pipeline-name", "demo", "--region", "eu-west-1"],
        ["pipeline", "stop", "--execution-arn", "EXEC_ARN", "--region", "eu-west-1"],
    ],
)
def test_commands_by_name_never_import_the_sagemaker_sdk(argv, tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argv)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(REPO_ROOT),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        },
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["code"] == 0
    assert report["sagemaker_modules"] == []


def test_importing_bridge_is_light():
    code = (
        "import sys, bridge, bridge.cli.app;"
        "heavy = [m for m in ('sagemaker', 'boto3', 'pydantic') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True
    )
    assert result.stdout.strip() == ""


def test_every_public_name_resolves():
    import bridge

    for name in bridge.__all__:
        assert getattr(bridge, name) is not None, name
