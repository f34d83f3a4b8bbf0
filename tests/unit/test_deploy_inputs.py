"""`smbridge deploy` checks its inputs like Prepare does, also in a dry run (model-deploy.yml:
"smbridge validates its inputs: ARN shape, allowed account/region")."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bridge.cli import main

REPO_ROOT = Path(__file__).resolve().parents[2]
ARN = "arn:aws:sagemaker:eu-west-1:{account}:model-package/smbridge-demo/4"


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(REPO_ROOT / "model-deploy", tmp_path / "model-deploy")
    shutil.copy(REPO_ROOT / "bridge.yaml", tmp_path / "bridge.yaml")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def deploy(account: str, *extra: str) -> int:
    return main(
        [
            "deploy",
            "--stage",
            "staging",
            "--model-package-arn",
            ARN.format(account=account),
            "--stage-config",
            "model-deploy/config/staging.json",
            "--dry-run",
            *extra,
        ]
    )


def test_an_arn_outside_the_registry_account_is_refused(checkout, capsys):
    assert deploy("111111111111") == 0
    capsys.readouterr()
    assert deploy("999999999999") == 2
    err = capsys.readouterr().err
    assert "account 999999999999 is not the model registry's (111111111111" in err


def test_a_dry_run_reads_bridge_yaml(checkout, capsys):
    text = (checkout / "bridge.yaml").read_text().replace("model_registry:", "model_registri:", 1)
    (checkout / "bridge.yaml").write_text(text)
    assert deploy("111111111111") == 2
    assert "model_registri" in capsys.readouterr().err


def test_a_missing_stage_config_names_the_flag(checkout, capsys):
    code = main(
        [
            "deploy",
            "--stage",
            "staging",
            "--model-package-arn",
            ARN.format(account="111111111111"),
            "--stage-config",
            "nope.json",
            "--dry-run",
        ]
    )
    assert code == 2
    assert "pass an existing file to --stage-config" in capsys.readouterr().err
