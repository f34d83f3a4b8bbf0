"""The CLI as users of the aws and az CLIs expect it (issue 9, item 7): common options before or
after the command, ``-o``, one ``--config`` and one ``--stage-config``, one JSON document for
every outcome, credential errors that say what is missing, only the options a command uses,
each with help text."""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.cli import trigger as cli_trigger
from bridge.cli.app import build_parser, main
from bridge.sandbox.ado_contract import REFERENCE_DIR

REPO_ROOT = Path(__file__).resolve().parents[2]
STAGING = str(REPO_ROOT / "model-deploy" / "config" / "staging.json")
TEMPLATES = str(REPO_ROOT / "model-deploy" / "templates")
PACKAGE = "arn:aws:sagemaker:eu-west-1:123456789012:model-package/smbridge-demo/3"
EXECUTION = "arn:aws:sagemaker:eu-west-1:123456789012:pipeline/demo/execution/abc"
ROLE = "arn:aws:iam::123456789012:role/ci"
EVENT = str(REFERENCE_DIR / "sagemaker-events" / "model-package-approved.json")
ROUTES = {
    "routes": {"churn-xgb": {"organization": "contoso", "project": "mlops", "pipelineId": 12}}
}
DEPLOY = ["deploy", "--dry-run", "--stage", "staging", "--model-package-arn", PACKAGE,
          "--templates-dir", TEMPLATES]  # fmt: skip


@pytest.fixture(autouse=True)
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bridge.yaml").write_text("region: eu-west-1\npipeline:\n  name: demo\n")
    return tmp_path


def no_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def leaves(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()):
    """(command words, parser) of every command, sub-commands loaded."""
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subparsers:
        yield words, parser
        return
    for name, sub in subparsers[0].choices.items():
        yield from leaves(sub, (*words, name))


def flags(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings}


ALL = dict(leaves(build_parser(complete=True)))


# -- before or after the command; -o -------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["pipeline", "status", "--dry-run", "--output", "json"],
        ["pipeline", "status", "--dry-run", "-o", "json"],
        ["-o", "json", "pipeline", "status", "--dry-run"],
        ["--output=json", "--dry-run", "pipeline", "status"],
        ["--dry-run", "-ojson", "--region", "eu-west-1", "pipeline", "status"],
        ["--config", "bridge.yaml", "-o", "json", "pipeline", "status", "--dry-run"],
    ],
)
def test_common_options_before_or_after_the_command(capsys, argv):
    assert main(argv) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["dry_run"] is True
    assert document["steps"][0]["arguments"] == {"PipelineName": "demo"}


def test_an_option_after_the_command_wins(project, capsys):
    (project / "other.yaml").write_text("region: eu-west-1\npipeline:\n  name: other\n")
    argv = ["--config", "bridge.yaml", "pipeline", "status", "--dry-run", "--config", "other.yaml"]
    assert main([*argv, "-o", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["steps"][0]["arguments"] == {"PipelineName": "other"}


# -- --config is bridge.yaml everywhere; --stage-config is the stage config ----------------------


def test_config_is_the_bridge_config_in_every_command():
    for words, parser in ALL.items():
        if words in (("trigger", "package"), ("demo",)):  # read no configuration at all
            assert "--config" not in flags(parser)
            continue
        config = next(a for a in parser._actions if "--config" in a.option_strings)
        assert "bridge config" in config.help, words
        assert "--bridge-config" not in parser.format_help(), words


def test_the_stage_config_has_one_flag_name():
    with_stage = {words for words, parser in ALL.items() if "--stage-config" in flags(parser)}
    assert with_stage == {("prepare",), ("deploy",), ("endpoint", "test")}
    for words, parser in ALL.items():
        for action in parser._actions:
            if "stage config" in (action.help or "") or "config/<stage>" in (action.help or ""):
                assert action.option_strings == ["--stage-config"], (words, action.option_strings)


def test_deploy_takes_the_stage_config_and_the_bridge_config(project, capsys):
    (project / "custom.yaml").write_text("region: eu-west-1\n")
    argv = [*DEPLOY, "--stage-config", STAGING, "--config", "custom.yaml", "-o", "json"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert (
        json.loads(captured.out)["steps"][-1]["arguments"]["StackName"] == "smbridge-demo-staging"
    )
    assert "deprecated" not in captured.err


def test_deploy_without_a_stage_config_names_the_flag(capsys):
    assert main(DEPLOY) == 2
    assert "--stage-config is required" in capsys.readouterr().err


def test_the_old_deploy_config_spelling_still_works_with_a_warning(capsys):
    """azure-pipelines/model-deploy.yml and tests/e2e still say ``deploy --config <stage>.json``."""
    assert main([*DEPLOY, "--config", STAGING, "-o", "json"]) == 0
    captured = capsys.readouterr()
    assert (
        json.loads(captured.out)["steps"][-1]["arguments"]["StackName"] == "smbridge-demo-staging"
    )
    assert f"pass the stage config as --stage-config {STAGING}" in captured.err


def test_a_bridge_yaml_given_as_config_to_deploy_is_not_a_stage_config(capsys):
    assert main([*DEPLOY, "--config", "bridge.yaml"]) == 2
    assert "--stage-config is required" in capsys.readouterr().err


# -- one JSON document on stdout, whatever happens -----------------------------------------------


def _raise(exc: BaseException):
    def handler(args, reporter):
        raise exc

    return handler


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["pipeline", "status", "--dry-run"], 0),
        (["pipeline", "start", "--dry-run", "--param", "novalue"], 2),  # input error
        (["pipeline", "status", "--dry-run", "--region", "mars-1"], 2),
        (["pipeline", "status", "--dry-run", "--config", "missing.yaml"], 2),  # config error
        (["pipeline", "upsert", "--dry-run"], 2),  # a setting missing
        (["pipeline", "status", "--bogus"], 2),  # argparse: unknown option
        (["deploy", "--stage", "staging"], 2),  # argparse: required argument
        (["registry", "latest", "--status", "Maybe"], 2),  # argparse: invalid choice
        (["pipeline"], 2),  # argparse: no action
        (["nope"], 2),  # argparse: no such command
        (["--region", "eu-west-1", "ado", "setup"], 2),  # an option the command does not use
        (["ado", "approvals", "approve", "42", "--comment", "x"], 2),
        (["trigger", "replay", "--queue-url", "https://sqs.x/q", "--dry-run"], 2),
    ],
)
@pytest.mark.parametrize("where", ["before", "after"])
def test_json_output_is_one_document_for_every_outcome(capsys, argv, code, where):
    argv = ["-o", "json", *argv] if where == "before" else [*argv, "-o", "json"]
    try:
        assert main(argv) == code
    except SystemExit as exc:  # argparse's usage errors stay SystemExit(2)
        assert exc.code == code
    captured = capsys.readouterr()
    document = json.loads(captured.out)  # exactly one document, nothing else
    if code:
        assert document["status"] == "error"
        assert document["exit_code"] == code
        assert document["error"]
        assert document["error"].split(": ")[-1] in captured.err
    assert "Traceback" not in captured.err


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (RuntimeError("boom"), 1),
        (KeyboardInterrupt(), 130),
        (__import__("bridge.errors").errors.ExecutionFailed("step Train failed"), 4),
    ],
)
def test_json_document_for_internal_errors_and_cancels(monkeypatch, capsys, exc, code):
    from bridge.cli import pipeline

    monkeypatch.setattr(pipeline, "_cmd_status", _raise(exc))
    assert main(["pipeline", "status", "-o", "json"]) == code
    document = json.loads(capsys.readouterr().out)
    assert (document["status"], document["exit_code"]) == ("error", code)


def test_no_credentials_in_json_is_one_document(monkeypatch, capsys):
    no_aws_credentials(monkeypatch)
    assert main(["pipeline", "status", "--execution-arn", EXECUTION, "-o", "json"]) == 6
    document = json.loads(capsys.readouterr().out)
    assert "no AWS credentials" in document["error"]


# -- credentials: no base credentials, --no-role, a missing profile -------------------------------


def test_no_base_credentials_for_a_configured_role_is_said_so(project, monkeypatch, capsys):
    no_aws_credentials(monkeypatch)
    (project / "bridge.yaml").write_text(f"region: eu-west-1\naws:\n  role_arn: {ROLE}\n")
    assert main(["pipeline", "status", "--execution-arn", EXECUTION]) == 6
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        f"error: no AWS credentials to assume role {ROLE} (aws.role_arn in bridge.yaml) with:"
    )
    assert "NoCredentialsError" not in err and "AssumeRole" not in err
    assert len(err.splitlines()) == 1


def test_no_base_credentials_for_a_role_flag_names_the_flag(monkeypatch, capsys):
    no_aws_credentials(monkeypatch)
    assert main(["pipeline", "status", "--execution-arn", EXECUTION, "--role-arn", ROLE]) == 6
    assert f"assume role {ROLE} (--role-arn) with" in capsys.readouterr().err


def test_no_role_turns_off_the_configured_role_for_one_run(project, monkeypatch, capsys):
    no_aws_credentials(monkeypatch)
    (project / "bridge.yaml").write_text(f"region: eu-west-1\naws:\n  role_arn: {ROLE}\n")
    monkeypatch.setenv("SMBRIDGE_AWS__ROLE_ARN", ROLE)
    assert main(["--no-role", "pipeline", "status", "--execution-arn", EXECUTION]) == 6
    err = capsys.readouterr().err
    assert "DescribePipelineExecution" in err and "no AWS credentials;" in err
    assert ROLE not in err  # no role was assumed: the pipeline call itself had no credentials


def test_no_role_makes_no_sts_call(project, capsys):
    from moto import mock_aws

    (project / "bridge.yaml").write_text(f"region: eu-west-1\naws:\n  role_arn: {ROLE}\n")
    from bridge.cli import clients

    seen = []
    real = clients.aws_clients

    def recording(*args, **kwargs):
        made = real(*args, **kwargs)
        seen.append(made.auth.role_arn)
        return made

    with mock_aws(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(clients, "aws_clients", recording)
        main(["pipeline", "status", "--execution-arn", EXECUTION])
        main(["pipeline", "status", "--execution-arn", EXECUTION, "--no-role"])
    assert seen == [ROLE, None]


@pytest.mark.parametrize("other", [["--role-arn", ROLE], ["--web-identity"]])
def test_no_role_with_a_role_flag_is_refused(capsys, other):
    assert main(["pipeline", "status", "--execution-arn", EXECUTION, "--no-role", *other]) == 2
    assert "--no-role and" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("setup", "source"),
    [
        ({"env": "AWS_PROFILE"}, "(AWS_PROFILE)"),
        ({"env": "AWS_DEFAULT_PROFILE"}, "(AWS_DEFAULT_PROFILE)"),
        ({"flag": True}, "(--profile)"),
        ({"yaml": True}, "(aws.profile in bridge.yaml)"),
    ],
)
def test_a_missing_profile_is_named(project, monkeypatch, capsys, setup, source):
    argv = ["pipeline", "status", "--execution-arn", EXECUTION]
    if "env" in setup:
        monkeypatch.setenv(setup["env"], "no-such-profile")
    if "flag" in setup:
        argv += ["--profile", "no-such-profile"]
    if "yaml" in setup:
        (project / "bridge.yaml").write_text(
            "region: eu-west-1\naws:\n  profile: no-such-profile\n"
        )
    assert main(argv) == 6
    err = capsys.readouterr().err
    assert f"AWS profile 'no-such-profile' {source}" in err
    assert "None" not in err


# -- trigger package --mode environment on another platform --------------------------------------


def test_package_environment_mode_warns_on_another_platform(monkeypatch, capsys):
    monkeypatch.setattr(cli_trigger, "this_platform", lambda: ("darwin", "x86_64", "3.11"))
    argv = ["trigger", "package", "--mode", "environment", "--dry-run", "-o", "json"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["steps"][0]["arguments"]["platform_matches"] is False
    warning = captured.err
    assert "this is darwin, the Lambda runs Linux" in warning
    assert "this machine is x86_64, the Lambda aarch64" in warning
    assert "this is Python 3.11, the Lambda's is 3.12" in warning
    assert "--mode pip" in warning


def test_package_environment_mode_on_the_lambdas_platform_is_quiet(monkeypatch, capsys):
    monkeypatch.setattr(cli_trigger, "this_platform", lambda: ("linux", "aarch64", "3.12"))
    argv = ["trigger", "package", "--mode", "environment", "--dry-run", "-o", "json"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["steps"][0]["arguments"]["platform_matches"] is True
    assert "warning" not in captured.err


def test_package_platform_is_compared_with_the_target_flags(monkeypatch, capsys):
    monkeypatch.setattr(cli_trigger, "this_platform", lambda: ("linux", "x86_64", "3.12"))
    argv = ["trigger", "package", "--mode", "environment", "--dry-run",
            "--platform", "manylinux_2_28_x86_64"]  # fmt: skip
    assert main(argv) == 0
    assert "warning" not in capsys.readouterr().err


# -- help text; only the options a command uses ---------------------------------------------------


def test_every_option_has_help_text():
    parser = build_parser(complete=True)
    for words, leaf in [((), parser), *ALL.items()]:
        for action in leaf._actions:
            if isinstance(action, argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
                continue
            name = "/".join(action.option_strings) or action.dest
            assert action.help and len(action.help) > 8, f"smbridge {' '.join(words)}: {name}"


AWS_FLAGS = {"--region", "--profile", "--role-arn", "--no-role", "--web-identity"}


def test_commands_show_only_the_options_they_use():
    for words, parser in ALL.items():
        shown = flags(parser)
        if words[0] == "ado":
            assert not shown & AWS_FLAGS, words
        if words == ("trigger", "package"):
            assert not shown & (AWS_FLAGS | {"--config"})
        if words == ("pipeline", "build"):  # offline: a region for the definition, no credentials
            assert "--region" in shown and not shown & (AWS_FLAGS - {"--region"})
            assert "--dry-run" not in shown
        if words == ("config", "show"):
            assert "--dry-run" not in shown
        if words[0] in ("pipeline", "registry", "deploy", "prepare", "endpoint"):
            assert {"--config", "-o", "--output", "--debug"} <= shown, words
    assert "--region" not in ALL[("ado", "setup")].format_help()


@pytest.mark.parametrize(
    ("argv", "flag", "command"),
    [
        (["--region", "eu-west-1", "ado", "setup"], "--region", "ado setup"),
        (["--role-arn", ROLE, "ado", "approvals", "list"], "--role-arn", "ado approvals list"),
        (["--dry-run", "config", "show"], "--dry-run", "config show"),
        (["--dry-run", "pipeline", "build"], "--dry-run", "pipeline build"),
        (["--config", "x.yaml", "trigger", "package"], "--config", "trigger package"),
    ],
)
def test_an_option_before_a_command_that_does_not_use_it_is_refused(capsys, argv, flag, command):
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert f"argument {flag}: not used by smbridge {command}" in capsys.readouterr().err


def test_ado_refuses_aws_flags_after_the_command_too(capsys):
    with pytest.raises(SystemExit):
        main(["ado", "setup", "--profile", "dev"])
    assert "unrecognized arguments: --profile" in capsys.readouterr().err


# -- trigger replay --dry-run needs routes, like simulate ----------------------------------------


@pytest.mark.parametrize("action", ["simulate", "replay"])
def test_trigger_dry_runs_need_the_routes(capsys, action):
    target = ["--event", EVENT] if action == "simulate" else ["--queue-url", "https://sqs.x/q"]
    assert main(["trigger", action, *target, "--dry-run"]) == 2
    assert "--dry-run needs the routes locally: --routes FILE or SMBRIDGE_ROUTES" in (
        capsys.readouterr().err
    )


def test_replay_dry_run_checks_and_shows_the_routes(project, capsys):
    routes = project / "routes.json"
    routes.write_text(json.dumps(ROUTES))
    argv = ["trigger", "replay", "--queue-url", "https://sqs.x/q", "--dry-run", "--routes"]
    assert main([*argv, str(routes), "-o", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["dry_run"] is True
    assert plan["steps"][1]["arguments"]["routes"] == ["churn-xgb"]
    routes.write_text(json.dumps({"routes": {"churn-xgb": {"organization": "c"}}}))
    assert main([*argv, str(routes)]) == 2
    assert "--routes" in capsys.readouterr().err


def test_replay_dry_run_reads_routes_from_the_environment(monkeypatch, capsys):
    monkeypatch.setenv("SMBRIDGE_ROUTES", json.dumps(ROUTES))
    assert main(["trigger", "replay", "--queue-url", "https://sqs.x/q", "--dry-run"]) == 0
    assert "churn-xgb" in capsys.readouterr().out


# -- an approval id that is not a UUID -----------------------------------------------------------


@pytest.mark.parametrize("action", ["approve", "reject"])
def test_an_approval_id_that_is_not_a_uuid_names_the_argument(capsys, action):
    with pytest.raises(SystemExit) as caught:
        main(["ado", "approvals", action, "42", "--comment", "ok", "--dry-run"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "argument ID: '42' is not an approval id: expected a UUID" in err
    assert "approval_id" not in err


# -- start-up: --help imports no command module ----------------------------------------------------


def test_help_imports_no_command_module():
    code = (
        "import contextlib, io, sys\n"
        "from bridge.cli.app import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('bridge.cli.')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True
    )
    assert result.stdout.strip() == "['bridge.cli.app', 'bridge.cli.common']"


# -- model-build/run_local.py without the steps extra ---------------------------------------------


def test_run_local_without_the_steps_extra_names_it(monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location(
        "run_local_under_test", REPO_ROOT / "model-build" / "run_local.py"
    )
    assert spec is not None and spec.loader is not None
    run_local = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_local)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        run_local.importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("xgboost", "sklearn") else real_find_spec(name, *a),
    )
    steps = []
    monkeypatch.setattr(run_local, "step", lambda *a, **k: steps.append(a))
    monkeypatch.setattr(sys, "argv", ["run_local.py"])
    assert run_local.main() == 2
    err = capsys.readouterr().err
    assert "scikit-learn, xgboost" in err
    assert "pip install -e '.[steps]'" in err
    assert "Traceback" not in err
    assert steps == []


# -- the README's command tables name real options ------------------------------------------------


def test_readme_command_rows_name_options_the_command_has():
    import re

    rows = re.findall(r"^\| `smbridge ([^`]+)`", (REPO_ROOT / "README.md").read_text(), re.M)
    assert len(rows) > 15
    for row in rows:
        words: list[str] = []
        for token in row.replace("\\|", "|").split():
            if not re.fullmatch(r"[a-z][a-z|-]*", token):
                break
            words.append(token.split("|")[0])
        parser = next(p for w, p in ALL.items() if tuple(words[: len(w)]) == w)
        for flag in re.findall(r"(?<![\w-])--[a-z][a-z-]*", row):
            assert flag in flags(parser), f"README: smbridge {row}: {flag}"


# -- the README's command tables name every option ----------------------------------------------

COMMON = {
    "--config", "--region", "--profile", "--role-arn", "--no-role", "--web-identity",
    "--dry-run", "--debug", "--output", "-o", "-h", "--help",
}  # fmt: skip


def test_the_readme_names_every_command_and_its_own_options():
    """Each command has a row in one of the README's command tables (``| `smbridge <words>``),
    and its rows mention every option it has beyond the common ones (listed once, at the table's
    foot)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rows: dict[tuple[str, ...], list[str]] = {}
    for line in readme.splitlines():
        # the command words of a row; `approve\|reject` names two commands
        match = re.match(r"\| `smbridge ((?:[a-z]+(?:\\\|[a-z]+)*(?: |`))+)", line)
        if match:
            alternatives = [word.split("\\|") for word in match.group(1).rstrip("` ").split(" ")]
            for words in itertools.product(*alternatives):
                rows.setdefault(words, []).append(line)
    missing = []
    for words, parser in ALL.items():
        mine = rows.get(words, [])
        if not mine:
            missing.append(f"smbridge {' '.join(words)}: no row")
            continue
        documented = {
            flag
            for action in parser._actions
            if action.help != argparse.SUPPRESS  # a deprecated alias, kept working but unlisted
            for flag in action.option_strings
        }
        for option in sorted(documented - COMMON):
            if not any(re.search(rf"{re.escape(option)}\b", row) for row in mine):
                missing.append(f"smbridge {' '.join(words)}: {option}")
    assert missing == []
