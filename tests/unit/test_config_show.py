"""``smbridge config show``: the effective configuration, where each value came from (file,
environment, flag, default), secrets masked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge.cli.app import main

ROLE = "arn:aws:iam::123456789012:role/ci"
OTHER_ROLE = "arn:aws:iam::123456789012:role/other"
PAT = "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnop"  # the shape of a classic PAT
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.fixture(autouse=True)
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bridge.yaml").write_text(
        "region: eu-west-1\n"
        "aws:\n"
        f"  role_arn: {ROLE}\n"
        "pipeline:\n"
        "  name: demo\n"
        "  tags:\n"
        "    project: demo\n"
    )
    return tmp_path


def show(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main(["config", "show", "-o", "json", *argv]) == 0
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    document["by_key"] = {row["key"]: row for row in document["settings"]}
    document["stderr"] = captured.err
    return document


def test_values_from_the_file_and_defaults(capsys):
    document = show(capsys)
    rows = document["by_key"]
    assert rows["region"] == {
        "key": "region", "value": "eu-west-1", "source": "file", "from": "bridge.yaml",
    }  # fmt: skip
    assert rows["pipeline.name"]["source"] == "file"
    assert rows["aws.role_arn"]["value"] == ROLE
    assert rows["pipeline.definition"] == {
        "key": "pipeline.definition",
        "value": "model-build/pipeline.py:get_pipeline",
        "source": "default",
        "from": "",
    }
    assert rows["aws.session_duration_seconds"]["source"] == "default"
    assert document["config_file"] == {
        "path": "bridge.yaml", "found": True, "source": "default", "from": "./bridge.yaml",
    }  # fmt: skip


def test_environment_overrides_are_named(capsys, monkeypatch):
    monkeypatch.setenv("SMBRIDGE_PIPELINE__NAME", "from-env")
    monkeypatch.setenv("SMBRIDGE_PIPELINE__TAGS__TEAM", "ml")
    monkeypatch.setenv("AWS_PROFILE", "dev")
    rows = show(capsys)["by_key"]
    assert rows["pipeline.name"] == {
        "key": "pipeline.name",
        "value": "from-env",
        "source": "environment",
        "from": "SMBRIDGE_PIPELINE__NAME",
    }
    assert rows["pipeline.tags"]["value"] == {"project": "demo", "team": "ml"}
    assert rows["pipeline.tags"]["from"] == "SMBRIDGE_PIPELINE__TAGS__TEAM"
    # unset in bridge.yaml: the AWS variable the commands fall back to
    assert (rows["aws.profile"]["value"], rows["aws.profile"]["from"]) == ("dev", "AWS_PROFILE")


def test_flags_win_and_are_named(capsys):
    document = show(capsys, "--region", "us-east-1", "--role-arn", OTHER_ROLE, "--web-identity")
    rows = document["by_key"]
    assert (rows["region"]["value"], rows["region"]["source"], rows["region"]["from"]) == (
        "us-east-1",
        "flag",
        "--region",
    )
    assert (rows["aws.role_arn"]["value"], rows["aws.role_arn"]["from"]) == (
        OTHER_ROLE,
        "--role-arn",
    )
    assert rows["aws.web_identity"]["value"] is True


def test_flags_before_the_command_count_too(capsys):
    assert main(["--region", "us-west-2", "-o", "json", "config", "show"]) == 0
    rows = {row["key"]: row for row in json.loads(capsys.readouterr().out)["settings"]}
    assert (rows["region"]["value"], rows["region"]["from"]) == ("us-west-2", "--region")


def test_no_role_shows_the_role_turned_off(capsys):
    rows = show(capsys, "--no-role")["by_key"]
    assert rows["aws.role_arn"] == {
        "key": "aws.role_arn", "value": None, "source": "flag", "from": "--no-role",
    }  # fmt: skip


def test_the_config_file_and_where_its_name_came_from(project, capsys, monkeypatch):
    (project / "other.yaml").write_text("region: us-east-1\n")
    document = show(capsys, "--config", "other.yaml")
    assert document["config_file"]["source"] == "flag"
    assert document["by_key"]["region"]["from"] == "other.yaml"
    monkeypatch.setenv("SMBRIDGE_CONFIG", "other.yaml")
    document = show(capsys)
    assert (document["config_file"]["source"], document["config_file"]["from"]) == (
        "environment",
        "SMBRIDGE_CONFIG",
    )


def test_secrets_are_masked_in_text_and_json(project, capsys, monkeypatch):
    monkeypatch.setenv("SMBRIDGE_ADO_PAT", PAT)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    # a PAT pasted into the wrong key of bridge.yaml
    (project / "bridge.yaml").write_text(f"aws:\n  service_connection_id: {PAT}\n")
    for output in ("text", "json"):
        assert main(["config", "show", "-o", output]) == 0
        captured = capsys.readouterr()
        everything = captured.out + captured.err
        assert PAT not in everything and AWS_SECRET not in everything
        assert "SMBRIDGE_ADO_PAT" in everything
        assert "masked" in everything
    assert main(["config", "show", "-o", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    environment = {row["name"]: row for row in document["environment"]}
    assert environment["SMBRIDGE_ADO_PAT"]["masked"] is True
    assert environment["AWS_SECRET_ACCESS_KEY"]["masked"] is True
    rows = {row["key"]: row for row in document["settings"]}
    assert rows["aws.service_connection_id"]["value"].startswith("<set, 52 characters")


def test_text_output_is_a_table_with_the_sources(capsys, monkeypatch):
    monkeypatch.setenv("SMBRIDGE_PIPELINE__NAME", "from-env")
    assert main(["config", "show", "--region", "us-east-1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("config file: bridge.yaml, from default ./bridge.yaml\n")
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines()[3:] if line.strip()}
    assert lines["region"] == ["us-east-1", "flag", "--region"]
    assert lines["pipeline.name"] == ["from-env", "environment", "SMBRIDGE_PIPELINE__NAME"]
    assert lines["aws.role_arn"] == [ROLE, "file", "bridge.yaml"]


def test_a_bad_config_is_one_line_exit_2(project, capsys):
    (project / "bridge.yaml").write_text("pipeline:\n  nmae: demo\n")
    assert main(["config", "show"]) == 2
    assert capsys.readouterr().err.startswith("error: bridge.yaml: unknown key 'pipeline.nmae'")
