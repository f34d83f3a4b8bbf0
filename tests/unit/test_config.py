from __future__ import annotations

from pathlib import Path

import pytest

from bridge.errors import ConfigError
from bridge.settings.bridge_config import load_config

REPO_ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bridge.yaml"
    path.write_text(text)
    return path


def test_repository_example_config_is_valid():
    config = load_config(REPO_ROOT / "bridge.yaml", environ={})
    assert config.pipeline.name
    assert config.pipeline.definition == "model-build/pipeline.py:get_pipeline"
    assert config.azure_devops is not None and config.azure_devops.environments is not None


def test_unquoted_account_id_is_accepted(tmp_path):
    config = load_config(write(tmp_path, "model_registry:\n  account_id: 123456789012\n"))
    assert config.model_registry.account_id == "123456789012"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("pipeline:\n  nmae: x\n", "unknown key 'pipeline.nmae'"),
        ("colour: blue\n", "unknown key 'colour'"),
        ("region: mars\n", "region: expected an AWS region like eu-west-1, got 'mars'"),
        (
            "pipeline:\n  execution_role_arn: my-role\n",
            "pipeline.execution_role_arn: expected an IAM role ARN",
        ),
        ("pipeline:\n  parallelism: 0\n", "pipeline.parallelism: expected greater than or equal"),
        ("model_registry:\n  account_id: 12\n", "expected a 12-digit AWS account id"),
        ("pipeline:\n  name: has_underscore\n", "pipeline.name: expected letters, digits"),
        ("- a\n- b\n", "expected a mapping"),
        ("pipeline: [\n", "fix the YAML syntax"),
    ],
)
def test_bad_config_is_one_line_naming_file_and_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    text_of_error = str(info.value)
    assert message in text_of_error
    assert text_of_error.startswith(str(path))
    assert "\n" not in text_of_error
    assert info.value.exit_code == 2


def test_environment_overrides_the_file_and_is_named_in_errors(tmp_path):
    path = write(tmp_path, "region: eu-west-1\npipeline:\n  name: from-file\n")
    config = load_config(
        path,
        environ={
            "SMBRIDGE_PIPELINE__NAME": "from-env",
            "SMBRIDGE_AWS__WEB_IDENTITY": "true",
            "SMBRIDGE_PIPELINE__PARALLELISM": "3",
        },
    )
    assert config.pipeline.name == "from-env"
    assert config.aws.web_identity is True
    assert config.pipeline.parallelism == 3
    with pytest.raises(ConfigError, match=r"^SMBRIDGE_REGION: region: expected an AWS region"):
        load_config(path, environ={"SMBRIDGE_REGION": "moon-1"})
    with pytest.raises(ConfigError, match=r"^SMBRIDGE_PIPELINE__COLOR: unknown key"):
        load_config(path, environ={"SMBRIDGE_PIPELINE__COLOR": "x"})


def test_missing_default_file_means_defaults_but_explicit_must_exist(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_config(environ={}).region is None
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml", environ={})
