"""bridge.pipeline.sdk: model-build/ built offline with the SageMaker SDK v3, deterministically.

(a) no AWS call, no connection; (b) byte-identical across processes, seconds and checkouts;
(c) editing train.py moves only the training code URI; (d) the definition's shape;
(e) canaries for the SDK internals the module relies on; (f) bad targets.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from bridge.errors import DefinitionError
from bridge.pipeline import sdk as sagemaker_build
from bridge.pipeline.definition import BuiltDefinition
from bridge.pipeline.sdk import build_pipeline_definition, code_files, content_digest

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_BUILD = REPO_ROOT / "model-build"
BUCKET = "smbridge-artifacts-test"
PIPELINE = "smbridge-demo-build"
REGION = "eu-west-1"
BUILD_ARGS: dict[str, Any] = {
    "region": REGION,
    "role_arn": "arn:aws:iam::123456789012:role/smbridge-sagemaker-execution",
    "bucket": BUCKET,
    "pipeline_name": PIPELINE,
    "model_package_group_name": "smbridge-demo",
}
CODE_URI = re.compile(rf"^s3://{BUCKET}/{PIPELINE}/code/[0-9a-f]{{64}}(/[^/]+)*$")
XGBOOST_IMAGE = "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-xgboost:1.7-1"


def _sdk_changed(what: str) -> str:
    return f"sagemaker SDK {version('sagemaker')} changed: {what}"


def _checkout(parent: Path) -> Path:
    """A copy of model-build/ (as another checkout would have it), without compiled files."""
    target = parent / "model-build"
    shutil.copytree(MODEL_BUILD, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


def _target(model_build: Path) -> str:
    return f"{model_build / 'pipeline.py'}:get_pipeline"


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], Any]:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _leaves(item, (*path, key)).items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _leaves(item, (*path, i)).items()}
    return {path: value}


def _diff(before: Any, after: Any) -> dict[tuple[Any, ...], tuple[Any, Any]]:
    old, new = _leaves(before), _leaves(after)
    return {
        p: (old.get(p), new.get(p)) for p in old.keys() | new.keys() if old.get(p) != new.get(p)
    }


def _step(document: dict[str, Any], name: str) -> dict[str, Any]:
    steps = list(document["Steps"])
    for step in document["Steps"]:
        steps += step.get("Arguments", {}).get("IfSteps", [])
        steps += step.get("Arguments", {}).get("ElseSteps", [])
    return next(step for step in steps if step["Name"] == name)


def _channel(training: dict[str, Any], name: str) -> dict[str, Any]:
    channels = training["Arguments"]["InputDataConfig"]
    return next(channel for channel in channels if channel["ChannelName"] == name)


# --- one offline build of the repository's model-build/, guarded ------------------------------


@dataclass
class Recorded:
    built: BuiltDefinition
    aws_calls: list[str]
    connections: list[str]
    seconds: float
    state_before: dict[str, Any]
    state_after: dict[str, Any]


def _process_state() -> dict[str, Any]:
    import boto3

    state: dict[str, Any] = {
        name: os.environ.get(name)
        for name in os.environ.keys() | {"AWS_DEFAULT_REGION", "SAGEMAKER_USER_CONFIG_OVERRIDE"}
        if name.startswith(("AWS_", "SAGEMAKER_"))
    }
    state["boto3.DEFAULT_SESSION"] = boto3.DEFAULT_SESSION
    state["root logger"] = (list(logging.getLogger().handlers), logging.getLogger().level)
    state["sys.path"] = list(sys.path)
    state["cwd"] = os.getcwd()
    if "sagemaker.train.model_trainer" in sys.modules:
        from sagemaker.core.config.config_manager import SageMakerConfig
        from sagemaker.train.model_trainer import ModelTrainer

        state["validate"] = SageMakerConfig.__dict__["validate_sagemaker_config"]
        state["staging"] = ModelTrainer.__dict__["_resolve_staging_bucket"]
    return state


@pytest.fixture(scope="module")
def offline_build(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    """Build model-build/ in this process with every way out of the machine recorded and refused.

    No credentials, no region and a profile that does not exist: a credential-chain walk or a
    lookup the SDK makes on its own shows up here (or fails). The SDK swallows some failures,
    hence the records.
    """
    import botocore.client
    import botocore.endpoint

    aws_calls: list[str] = []
    connections: list[str] = []

    def make_api_call(client: Any, operation: str, params: Any) -> Any:
        aws_calls.append(f"{client.meta.service_model.service_name}:{operation}")
        raise AssertionError(f"AWS call during an offline build: {operation}")

    def send(endpoint: Any, request: Any) -> Any:
        aws_calls.append(f"HTTP {request.url}")
        raise AssertionError(f"HTTP request during an offline build: {request.url}")

    def connect(sock: socket.socket, address: Any) -> Any:
        connections.append(repr(address))
        raise OSError(f"connection during an offline build: {address!r}")

    scratch = tmp_path_factory.mktemp("offline-build")
    with pytest.MonkeyPatch.context() as patch:
        for name in (
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_DEFAULT_REGION",
            "AWS_REGION",
            "AWS_EC2_METADATA_DISABLED",
            "SAGEMAKER_VALIDATE_ROLE",
        ):
            patch.delenv(name, raising=False)
        patch.setenv("AWS_PROFILE", "no-such-profile")
        patch.setenv("AWS_CONFIG_FILE", str(scratch / "no-aws-config"))
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(scratch / "no-aws-credentials"))
        patch.setattr(botocore.client.BaseClient, "_make_api_call", make_api_call)
        patch.setattr(botocore.endpoint.Endpoint, "_send", send)
        patch.setattr(socket.socket, "connect", connect)
        patch.setattr(socket.socket, "connect_ex", connect)
        patch.chdir(scratch)
        before = _process_state()
        started = time.perf_counter()
        built = build_pipeline_definition(
            _target(MODEL_BUILD), staging_dir=scratch / "staging", **BUILD_ARGS
        )
        seconds = time.perf_counter() - started
        for thread in threading.enumerate():  # telemetry is sent from background threads
            if thread.name.startswith("sagemaker"):
                thread.join(timeout=10)
        after = _process_state()
    return Recorded(built, aws_calls, connections, seconds, before, after)


# --- (a) offline ---------------------------------------------------------------------------


@pytest.mark.slow
def test_building_makes_no_aws_call_and_opens_no_connection(offline_build: Recorded) -> None:
    assert offline_build.aws_calls == []
    assert offline_build.connections == []
    assert offline_build.seconds < 30


@pytest.mark.slow
def test_building_leaves_the_process_as_it_found_it(offline_build: Recorded) -> None:
    before, after = dict(offline_build.state_before), dict(offline_build.state_after)
    # The two patched SDK attributes are the SDK's own again.
    assert (
        after.pop("validate").__func__.__qualname__ == "SageMakerConfig.validate_sagemaker_config"
    )
    assert after.pop("staging").__qualname__ == "ModelTrainer._resolve_staging_bucket"
    before.pop("validate", None)
    before.pop("staging", None)
    assert after == before


@pytest.mark.slow
def test_a_swallowed_aws_call_still_fails_the_build(
    tmp_path: Path, offline_build: Recorded
) -> None:
    target = tmp_path / "sneaky.py"
    target.write_text(SNEAKY_PIPELINE)
    with pytest.raises(DefinitionError, match=r"needed AWS calls.*s3:ListBuckets"):
        build_pipeline_definition(
            f"{target}:get_pipeline", staging_dir=tmp_path / "staging", **BUILD_ARGS
        )


SNEAKY_PIPELINE = """
from sagemaker.mlops.workflow.fail_step import FailStep
from sagemaker.mlops.workflow.pipeline import Pipeline

def get_pipeline(pipeline_name, sagemaker_session):
    try:
        sagemaker_session.boto_session.client("s3").list_buckets()
    except Exception:
        pass  # like the SDK's own probes: failure swallowed
    return Pipeline(name=pipeline_name, steps=[FailStep(name="F")],
                    sagemaker_session=sagemaker_session)
"""


# --- (b) deterministic across processes, time and checkouts -------------------------------

BUILD_SCRIPT = r"""
import json, socket, sys
from pathlib import Path
import botocore.client

attempts = []
def refuse_call(client, operation, params):
    attempts.append(operation)
    raise RuntimeError("network disabled")
def refuse_connect(sock, address):
    attempts.append(repr(address))
    raise OSError("network disabled")
botocore.client.BaseClient._make_api_call = refuse_call
socket.socket.connect = refuse_connect

from bridge.pipeline.sdk import build_pipeline_definition
target, staging, output, arguments = sys.argv[1:5]
built = build_pipeline_definition(target, staging_dir=Path(staging), **json.loads(arguments))
Path(output).write_bytes(built.definition_json.encode("utf-8"))
uploads = [[u.s3_uri, u.sha256] for u in built.uploads]
print(json.dumps({"uploads": uploads, "attempts": attempts}))
"""


def _build_in_subprocess(target: str, cwd: Path, scratch: Path, hash_seed: str) -> dict[str, Any]:
    scratch.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONHASHSEED": hash_seed}
    output = scratch / "definition.json"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            BUILD_SCRIPT,
            target,
            str(scratch / "staging"),
            str(output),
            json.dumps(BUILD_ARGS),
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    report["definition"] = output.read_bytes()
    return report


@pytest.mark.slow
def test_definition_is_byte_identical_across_processes_seconds_and_checkouts(
    tmp_path: Path, offline_build: Recorded
) -> None:
    first = _checkout(tmp_path / "checkout-one")
    second = _checkout(tmp_path / "elsewhere" / "checkout-two")
    # Compiled files must not count (the SDK would upload them, the hash ignores them).
    pycache = second / "steps" / "__pycache__"
    pycache.mkdir()
    (pycache / "train.cpython-311.pyc").write_bytes(os.urandom(64))

    started = time.monotonic()
    one = _build_in_subprocess(  # relative target, cwd = the checkout's parent
        "model-build/pipeline.py:get_pipeline", first.parent, tmp_path / "build-one", "1"
    )
    time.sleep(max(0.0, 1.2 - (time.monotonic() - started)))  # the SDK's names use seconds
    two = _build_in_subprocess(_target(second), tmp_path, tmp_path / "build-two", "2")

    assert one["attempts"] == [] and two["attempts"] == []
    assert one["definition"] == two["definition"]
    assert one["uploads"] == two["uploads"]
    assert not any("__pycache__" in uri or uri.endswith(".pyc") for uri, _ in two["uploads"])
    # ...and the same as this process built from the repository itself.
    assert one["definition"] == offline_build.built.definition_json.encode("utf-8")


# --- (c) an edit moves only its own code URI -----------------------------------------------


@pytest.mark.slow
def test_editing_train_py_changes_only_the_training_code_uri(
    tmp_path: Path, offline_build: Recorded
) -> None:
    checkout = _checkout(tmp_path)
    train = checkout / "steps" / "train.py"
    train.write_text(train.read_text() + "\n# retrained with a comment\n")
    edited = build_pipeline_definition(
        _target(checkout), staging_dir=tmp_path / "staging", **BUILD_ARGS
    )
    before = offline_build.built.document

    changes = _diff(before, edited.document)
    assert len(changes) == 1, changes
    ((path, (old, new)),) = changes.items()
    training = _step(before, "TrainModel")
    code_channel = _channel(training, "code")
    assert path[-3:] == ("DataSource", "S3DataSource", "S3Uri")
    channels = training["Arguments"]["InputDataConfig"]
    step_index = before["Steps"].index(training)
    assert path[:5] == (
        "Steps",
        step_index,
        "Arguments",
        "InputDataConfig",
        channels.index(code_channel),
    )
    assert CODE_URI.match(old) and CODE_URI.match(new) and old != new

    old_uploads = {u.s3_uri for u in offline_build.built.uploads}
    new_uploads = {u.s3_uri for u in edited.uploads}
    assert {uri.rsplit("/code/", 1)[1].split("/")[0] for uri in new_uploads - old_uploads} == {
        new.rsplit("/", 1)[1]
    }


# --- (d) what the definition holds -----------------------------------------------------------


@pytest.mark.slow
def test_definition_declares_the_parameters(offline_build: Recorded) -> None:
    parameters = {p["Name"]: p for p in offline_build.built.parameters}
    assert list(parameters) == [
        "InputDataUrl",
        "ProcessingInstanceType",
        "TrainingInstanceType",
        "AucThreshold",
        "ModelApprovalStatus",
    ]
    # The shipped data set is staged like code: content-addressed, uploaded by upsert.
    data_default = parameters["InputDataUrl"]["DefaultValue"]
    assert re.fullmatch(
        rf"s3://{BUCKET}/{PIPELINE}/code/[0-9a-f]{{64}}/breast_cancer\.csv", data_default
    )
    assert data_default in {upload.s3_uri for upload in offline_build.built.uploads}
    assert parameters["AucThreshold"] == {
        "Name": "AucThreshold",
        "Type": "Float",
        "DefaultValue": 0.9,
    }
    assert parameters["ModelApprovalStatus"]["DefaultValue"] == "PendingManualApproval"
    assert {p["Type"] for name, p in parameters.items() if name != "AucThreshold"} == {"String"}


@pytest.mark.slow
def test_definition_chains_preprocess_train_evaluate_condition(offline_build: Recorded) -> None:
    document = offline_build.built.document
    assert [(s["Name"], s["Type"]) for s in document["Steps"]] == [
        ("PreprocessData", "Processing"),
        ("TrainModel", "Training"),
        ("EvaluateModel", "Processing"),
        ("CheckAucThreshold", "Condition"),
    ]
    preprocess = _step(document, "PreprocessData")["Arguments"]
    assert preprocess["AppSpecification"]["ImageUri"] == XGBOOST_IMAGE
    assert preprocess["AppSpecification"]["ContainerEntrypoint"] == [
        "python3",
        "/opt/ml/processing/input/code/preprocess.py",
    ]
    inputs = {i["InputName"]: i["S3Input"]["S3Uri"] for i in preprocess["ProcessingInputs"]}
    assert inputs["input"] == {"Get": "Parameters.InputDataUrl"}
    assert CODE_URI.match(inputs["code"]) and inputs["code"].endswith("/preprocess.py")

    training = _step(document, "TrainModel")
    arguments = training["Arguments"]
    assert arguments["AlgorithmSpecification"]["TrainingImage"] == XGBOOST_IMAGE
    assert arguments["ResourceConfig"]["InstanceType"] == {"Get": "Parameters.TrainingInstanceType"}
    assert arguments["HyperParameters"]["num_round"] == "200"
    for split in ("train", "validation"):
        source = _channel(training, split)["DataSource"]["S3DataSource"]["S3Uri"]
        expected = f"Steps.PreprocessData.ProcessingOutputConfig.Outputs['{split}'].S3Output.S3Uri"
        assert source == {"Get": expected}
    for channel in ("code", "sm_drivers"):
        assert CODE_URI.match(_channel(training, channel)["DataSource"]["S3DataSource"]["S3Uri"])

    evaluate = _step(document, "EvaluateModel")
    assert evaluate["PropertyFiles"] == [
        {
            "PropertyFileName": "EvaluationReport",
            "OutputName": "evaluation",
            "FilePath": "evaluation.json",
        }
    ]
    model_input = next(
        i for i in evaluate["Arguments"]["ProcessingInputs"] if i["InputName"] == "model"
    )
    assert model_input["S3Input"]["S3Uri"] == {
        "Get": "Steps.TrainModel.ModelArtifacts.S3ModelArtifacts"
    }


@pytest.mark.slow
def test_definition_creates_no_experiment_or_trial(offline_build: Recorded) -> None:
    """Issue 8, item 12. Source: the SDK's ``Pipeline(pipeline_experiment_config=...)`` defaults
    to ``PipelineExperimentConfig(PIPELINE_NAME, PIPELINE_EXECUTION_ID)`` in the regions listed in
    ``sagemaker.mlops.workflow._utils.EUREKA_GA_REGIONS`` (eu-west-1 among them); SageMaker then
    creates an experiment and a trial per execution as the execution role, which would need
    sagemaker:CreateExperiment, CreateTrial, AssociateTrialComponent, ... (infra/automation-
    account.yaml grants none). model-build/pipeline.py turns it off: nothing reads them."""
    from sagemaker.mlops.workflow._utils import EUREKA_GA_REGIONS
    from sagemaker.mlops.workflow.pipeline import Pipeline

    default = inspect.signature(Pipeline).parameters["pipeline_experiment_config"].default
    assert default is not None, _sdk_changed("no default PipelineExperimentConfig any more")
    assert REGION in EUREKA_GA_REGIONS, _sdk_changed(f"the default is not applied in {REGION}")
    document = offline_build.built.document
    assert document.get("PipelineExperimentConfig") is None
    assert "ExperimentName" not in offline_build.built.definition_json
    assert "TrialName" not in offline_build.built.definition_json


@pytest.mark.slow
def test_definition_registers_on_auc_or_fails_with_it(offline_build: Recorded) -> None:
    document = offline_build.built.document
    auc = {
        "Std:JsonGet": {
            "PropertyFile": {"Get": "Steps.EvaluateModel.PropertyFiles.EvaluationReport"},
            "Path": "binary_classification_metrics.auc.value",
        }
    }
    condition = _step(document, "CheckAucThreshold")["Arguments"]
    assert condition["Conditions"] == [
        {
            "Type": "GreaterThanOrEqualTo",
            "LeftValue": auc,
            "RightValue": {"Get": "Parameters.AucThreshold"},
        }
    ]
    assert [s["Name"] for s in condition["IfSteps"]] == ["RegisterModel"]
    assert [s["Name"] for s in condition["ElseSteps"]] == ["AucBelowThreshold"]

    register = _step(document, "RegisterModel")
    assert register["Type"] == "RegisterModel"
    arguments = register["Arguments"]
    assert arguments["ModelPackageGroupName"] == "smbridge-demo"
    assert arguments["ModelApprovalStatus"] == {"Get": "Parameters.ModelApprovalStatus"}
    statistics = arguments["ModelMetrics"]["ModelQuality"]["Statistics"]
    assert statistics["ContentType"] == "application/json"
    assert statistics["S3Uri"]["Std:Join"]["Values"][-3:] == [
        "EvaluateModel",
        "evaluation",
        "evaluation.json",
    ]
    (container,) = arguments["InferenceSpecification"]["Containers"]
    assert container["Image"] == XGBOOST_IMAGE
    assert container["ModelDataUrl"] == {"Get": "Steps.TrainModel.ModelArtifacts.S3ModelArtifacts"}
    # No script-mode variables: the XGBoost image must serve xgboost-model in algorithm mode.
    assert "SAGEMAKER_PROGRAM" not in container.get("Environment", {})

    fail = _step(document, "AucBelowThreshold")
    assert fail["Type"] == "Fail"
    assert auc in fail["Arguments"]["ErrorMessage"]["Std:Join"]["Values"]


@pytest.mark.slow
def test_every_code_uri_is_staged_and_nothing_is_timestamped(offline_build: Recorded) -> None:
    built = offline_build.built
    uploads = {upload.s3_uri: upload for upload in built.uploads}
    code_uris = [
        value
        for value in _leaves(built.document).values()
        if isinstance(value, str) and value.startswith(f"s3://{BUCKET}/{PIPELINE}/code/")
    ]
    assert len(code_uris) == 5  # preprocess, evaluate, training code and drivers, the data set
    for uri in code_uris:
        assert uri in uploads or any(staged.startswith(f"{uri}/") for staged in uploads), uri
    for upload in uploads.values():
        assert CODE_URI.match(upload.s3_uri)
        assert upload.sha256 == hashlib.sha256(upload.local_path.read_bytes()).hexdigest()
        assert "__pycache__" not in upload.s3_uri
    assert not re.search(r"\d{14}", built.definition_json), "a timestamp in the definition"
    assert built.definition_json == sagemaker_build.canonical_json(built.definition_json)

    source_code = next(u for u in uploads if u.endswith("/sourcecode.json"))
    recorded = json.loads(uploads[source_code].local_path.read_text())
    assert (recorded["source_dir"], recorded["entry_script"]) == ("steps", "train.py")


# --- (e) canaries: the SDK internals this module relies on ---------------------------------


def test_sdk_is_the_pinned_version() -> None:
    installed = {name: version(name) for name in sagemaker_build.PINNED_SDK_DISTRIBUTIONS}
    assert installed == sagemaker_build.PINNED_SDK_DISTRIBUTIONS, _sdk_changed(
        f"installed {installed}, pinned {sagemaker_build.PINNED_SDK_DISTRIBUTIONS}; the SDK's "
        "driver files are part of the definition: re-check the canaries below, then update "
        "PINNED_SDK_DISTRIBUTIONS and the 'build' extra in pyproject.toml together"
    )


@pytest.mark.slow
def test_sdk_validates_the_config_on_every_lookup(offline_build: Recorded) -> None:
    from sagemaker.core.common_utils import get_sagemaker_config_value
    from sagemaker.core.config.config_manager import SageMakerConfig
    from sagemaker.core.config.config_schema import TELEMETRY_OPT_OUT_PATH

    assert isinstance(SageMakerConfig.__dict__.get("validate_sagemaker_config"), staticmethod), (
        _sdk_changed("SageMakerConfig.validate_sagemaker_config is no longer a staticmethod")
    )
    config = sagemaker_build._TELEMETRY_OPT_OUT
    seen: list[Any] = []

    class FakeSession:
        sagemaker_config = config

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SageMakerConfig, "validate_sagemaker_config", staticmethod(seen.append))
        value = get_sagemaker_config_value(FakeSession(), TELEMETRY_OPT_OUT_PATH)
    assert value is True, _sdk_changed(
        f"telemetry opt-out is no longer at {TELEMETRY_OPT_OUT_PATH}"
    )
    assert seen == [config], _sdk_changed(
        "config lookups no longer call SageMakerConfig.validate_sagemaker_config; "
        "the validate-once patch in bridge/pipeline/sdk.py is obsolete"
    )


@pytest.mark.slow
def test_sdk_trainer_probes_iam_for_its_staging_bucket(offline_build: Recorded) -> None:
    from sagemaker.train.model_trainer import ModelTrainer

    resolve = ModelTrainer.__dict__.get("_resolve_staging_bucket")
    assert callable(resolve), _sdk_changed("ModelTrainer._resolve_staging_bucket is gone")
    assert list(inspect.signature(resolve).parameters) == ["self"], _sdk_changed(
        "ModelTrainer._resolve_staging_bucket takes new arguments"
    )
    assert "simulate_principal_policy" in inspect.getsource(resolve), _sdk_changed(
        "_resolve_staging_bucket no longer calls IAM; drop its patch"
    )
    channel_source = inspect.getsource(ModelTrainer.create_input_data_channel)
    assert "self._resolve_staging_bucket()" in channel_source, _sdk_changed(
        "create_input_data_channel no longer resolves the staging bucket that way"
    )
    assert "self.sagemaker_session.upload_data(" in channel_source, _sdk_changed(
        "ModelTrainer no longer uploads code through Session.upload_data"
    )


@pytest.mark.slow
def test_sdk_upload_methods_have_the_overridden_signatures(offline_build: Recorded) -> None:
    from sagemaker.core.helper.session_helper import Session
    from sagemaker.core.s3.client import S3Uploader

    def parameters(function: Any) -> list[str]:
        return list(inspect.signature(function).parameters)

    assert parameters(Session.upload_data) == [
        "self",
        "path",
        "bucket",
        "key_prefix",
        "callback",
        "extra_args",
    ], _sdk_changed("Session.upload_data's parameters")
    assert parameters(Session.upload_string_as_file_body) == [
        "self",
        "body",
        "bucket",
        "key",
        "kms_key",
    ], _sdk_changed("Session.upload_string_as_file_body's parameters")
    assert parameters(Session.default_bucket) == ["self"], _sdk_changed("Session.default_bucket")
    assert "sagemaker_session.upload_data(" in inspect.getsource(S3Uploader.upload), _sdk_changed(
        "S3Uploader.upload (processing code) no longer goes through Session.upload_data"
    )


# --- (f) bad targets -------------------------------------------------------------------------

TARGETS = """
from sagemaker.mlops.workflow.fail_step import FailStep
from sagemaker.mlops.workflow.pipeline import Pipeline
from sagemaker.core.workflow.pipeline_context import PipelineSession

def raises(sagemaker_session):
    raise ValueError("no data\\nat all")

def returns_dict(sagemaker_session):
    return {"Steps": []}

def no_session(pipeline_name):
    return None

def needs_more(sagemaker_session, learning_rate):
    return None

def own_session(pipeline_name, sagemaker_session):
    return Pipeline(name=pipeline_name, steps=[FailStep(name="F")],
                    sagemaker_session=PipelineSession(default_bucket="x"))

not_a_function = 42
"""


@pytest.fixture
def targets(tmp_path: Path) -> Path:
    path = tmp_path / "targets.py"
    path.write_text(TARGETS)
    (tmp_path / "broken.py").write_text("import not_a_module_anywhere_xyz\n")
    return path


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("model-build/pipeline.py", "is not 'path/to/file.py:function'"),
        ("model-build/pipeline.py:", "is not 'path/to/file.py:function'"),
        ("model-build/pipeline.py:get-pipeline", "is not 'path/to/file.py:function'"),
        (":get_pipeline", "is not 'path/to/file.py:function'"),
        ("not a module:get_pipeline", "neither a .py file path nor a dotted module name"),
        ("no/such/pipeline.py:get_pipeline", "does not exist"),
    ],
)
def test_malformed_or_missing_targets_fail_before_loading_the_sdk(
    target: str, message: str, tmp_path: Path
) -> None:
    with pytest.raises(DefinitionError, match=re.escape(message)) as caught:
        build_pipeline_definition(target, staging_dir=tmp_path, **BUILD_ARGS)
    assert "\n" not in str(caught.value)


def test_a_role_name_is_refused(tmp_path: Path) -> None:
    arguments = {**BUILD_ARGS, "role_arn": "smbridge-sagemaker-execution"}
    with pytest.raises(DefinitionError, match="is not an ARN"):
        build_pipeline_definition(
            "model-build/pipeline.py:get_pipeline", staging_dir=tmp_path, **arguments
        )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("missing", "has no function 'missing'"),
        ("not_a_function", "is not a function"),
        ("raises", "raised ValueError: no data at all"),
        ("returns_dict", "returned dict, not a sagemaker.mlops.workflow.pipeline.Pipeline"),
        ("no_session", "does not accept a sagemaker_session keyword"),
        ("needs_more", "requires learning_rate"),
        ("own_session", "built its Pipeline with another SageMaker session"),
    ],
)
def test_bad_functions_give_one_line_definition_errors(
    targets: Path, function: str, message: str, offline_build: Recorded
) -> None:
    with pytest.raises(DefinitionError, match=re.escape(message)) as caught:
        build_pipeline_definition(
            f"{targets}:{function}", staging_dir=targets.parent / "staging", **BUILD_ARGS
        )
    assert "\n" not in str(caught.value)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("broken.py:get_pipeline", "importing broken.py failed: ModuleNotFoundError"),
        ("no_such_package_xyz.pipeline:get_pipeline", "cannot be found on sys.path"),
    ],
)
def test_unimportable_targets_give_definition_errors(
    targets: Path, target: str, message: str, offline_build: Recorded, monkeypatch
) -> None:
    monkeypatch.chdir(targets.parent)
    with pytest.raises(DefinitionError, match=re.escape(message)):
        build_pipeline_definition(target, staging_dir=targets.parent / "staging", **BUILD_ARGS)


# --- content addressing ----------------------------------------------------------------------


def test_code_files_skip_compiled_python(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "pkg" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "pkg" / "a.py").write_text("A = 1\n")
    (tmp_path / "pkg" / "b.pyc").write_bytes(b"\0")
    (tmp_path / "run.sh").write_text("echo\n")
    assert [relative for relative, _ in code_files(tmp_path)] == ["pkg/a.py", "run.sh"]
    assert [relative for relative, _ in code_files(tmp_path / "run.sh")] == ["run.sh"]


def test_content_digest_depends_on_names_and_bytes_only(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    for folder in (one, two):
        folder.mkdir()
        (folder / "train.py").write_text("print('hi')\n")
    os.utime(two / "train.py", (0, 0))
    assert content_digest(code_files(one)) == content_digest(code_files(two))
    (two / "train.py").write_text("print('hi!')\n")
    assert content_digest(code_files(one)) != content_digest(code_files(two))
    (two / "train.py").rename(two / "other.py")
    (two / "other.py").write_text("print('hi')\n")
    assert content_digest(code_files(one)) != content_digest(code_files(two))


def test_stager_mirrors_s3_keys_under_the_staging_dir(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "a.py").write_text("A = 1\n")
    (source / "run.sh").write_text("echo\n")
    stager = sagemaker_build._Stager(tmp_path / "staging", BUCKET, f"/{PIPELINE}/")

    folder_uri = stager.stage_path(source, None)
    file_uri = stager.stage_path(str(source / "run.sh"), "other-bucket")
    body_uri = stager.stage_body(b"#!/bin/sh\n", BUCKET, "chosen/by/sdk/runproc.sh")

    digest = content_digest(code_files(source))
    assert folder_uri == f"s3://{BUCKET}/{PIPELINE}/code/{digest}"
    assert CODE_URI.match(folder_uri)
    assert file_uri.startswith("s3://other-bucket/") and file_uri.endswith("/run.sh")
    assert body_uri == f"s3://{BUCKET}/chosen/by/sdk/runproc.sh"
    uploads = {upload.s3_uri: upload for upload in stager.uploads()}
    assert list(uploads) == sorted(uploads)
    assert set(uploads) == {
        f"{folder_uri}/run.sh",
        f"{folder_uri}/sub/a.py",
        file_uri,
        body_uri,
    }
    for uri, upload in uploads.items():
        bucket, key = uri.removeprefix("s3://").split("/", 1)
        assert upload.local_path == (tmp_path / "staging" / bucket / key).resolve()
        assert upload.sha256 == hashlib.sha256(upload.local_path.read_bytes()).hexdigest()
    with pytest.raises(ValueError, match="outside"):
        stager.stage_body(b"x", BUCKET, "../../escape")
