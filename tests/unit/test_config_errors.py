"""bridge.yaml errors are one bounded line naming file (and line), and never echo a secret."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError, field_validator

from bridge.cli.app import main
from bridge.errors import ConfigError, first_error, mask, shown
from bridge.settings.bridge_config import MAX_CONFIG_BYTES, load_config

# Shaped like the real thing, made up.
CLASSIC_PAT = "k3x9m2q7w8e4r5t6y1u0i9o8p7a6s5d4f3g2h1j0l9z8x7c6v5b4"
NEW_PAT = "7Hq2Lm9Xw4Rt6Yp1Ns8Kd3Jf5Gb0Vc2Zx7Aq4We9Ru1Ty6Ui3Op8As5Df0Gh2Jk7Lz4Xc9Bn5Tr8AZDOVb1N"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLE1y"
ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"

# "Billion laughs", six levels deep: 9**6 "lol"s, a 4 MB error line before the fix (nine levels
# made 2.8 GB), from a 300-byte file.
BILLION_LAUGHS = "\n".join(
    [
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
        *(
            f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]"
            for previous, name in zip("abcde", "bcdef", strict=True)
        ),
        "region: *f",
    ]
)


def write(tmp_path: Path, text: str | bytes, name: str = "bridge.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=environ or {})
    message = str(info.value)
    assert info.value.exit_code == 2
    assert "\n" not in message and "\r" not in message
    assert len(message) < 400, message
    return message


def test_the_shapes_are_the_real_lengths():
    assert len(CLASSIC_PAT) == 52 and len(NEW_PAT) == 84 and len(AWS_SECRET) == 40


# -- item 2: no secret echoed, nothing unbounded --------------------------------------------------


@pytest.mark.parametrize("secret", [CLASSIC_PAT, NEW_PAT, AWS_SECRET, ACCESS_KEY_ID])
def test_a_secret_pasted_into_a_setting_is_described_not_echoed(tmp_path, secret):
    path = write(tmp_path, f"aws:\n  role_arn: {secret}\n")
    message = config_error(path)
    assert secret not in message
    assert secret[:12] not in message and secret[-12:] not in message
    assert message == (
        f"{path}: aws.role_arn: expected an IAM role ARN like arn:aws:iam::123456789012:role/Name, "
        f"got <{len(secret)}-character value, looks like a secret; not shown>"
    )


def test_a_secret_in_an_environment_override_is_not_echoed(tmp_path):
    path = write(tmp_path, "region: eu-west-1\n")
    message = config_error(path, {"SMBRIDGE_AWS__ROLE_ARN": CLASSIC_PAT})
    assert CLASSIC_PAT not in message
    assert message.startswith("SMBRIDGE_AWS__ROLE_ARN: aws.role_arn: expected an IAM role ARN")
    assert "<52-character value, looks like a secret; not shown>" in message


def test_a_secret_used_as_a_key_is_not_echoed(tmp_path):
    message = config_error(write(tmp_path, f"pipeline:\n  tags:\n    {CLASSIC_PAT}: [1]\n"))
    assert CLASSIC_PAT not in message
    assert "pipeline.tags.<52-character key, looks like a secret; not shown>" in message
    message = config_error(write(tmp_path, f"aws:\n  {AWS_SECRET}: x\n"))
    assert AWS_SECRET not in message and "unknown key 'aws.<40-character key" in message


def test_ordinary_values_are_still_shown(tmp_path):
    arn = "arn:aws:iam::123456789012:user/ChurnModelTrainingPipelineForProduction"
    assert f"got '{arn}'" in config_error(write(tmp_path, f"aws:\n  role_arn: {arn}\n"))
    assert "got 'mars'" in config_error(write(tmp_path, "region: mars\n"))


def test_a_long_value_is_cut(tmp_path):
    message = config_error(write(tmp_path, f"pipeline:\n  name: {'x' * 5000}\n"))
    assert message.endswith(f", got '{'x' * 80}'…(5000 chars)")


def test_a_long_key_is_cut(tmp_path):
    message = config_error(write(tmp_path, f"pipeline:\n  {'k' * 1000}: 1\n"))
    assert f"unknown key 'pipeline.{'k' * 80}…(1000 chars)'" in message


def test_a_line_break_in_a_key_stays_on_one_line(tmp_path):
    assert "unknown key 'col\\nour'" in config_error(write(tmp_path, '"col\\nour": 1\n'))


def test_a_list_is_described_not_printed(tmp_path):
    message = config_error(write(tmp_path, f"region: [{', '.join(['eu-west-1'] * 500)}]\n"))
    assert message.endswith("region: expected a valid string, got a list of 500 items")


def test_billion_laughs_is_refused_quickly_in_one_short_line(tmp_path):
    path = write(tmp_path, BILLION_LAUGHS)
    started = time.monotonic()
    message = config_error(path)
    assert time.monotonic() - started < 5
    assert message.startswith(f"{path}: line ")
    assert "more than 10000 values once YAML aliases are expanded" in message
    assert "lol" not in message


def test_a_recursive_alias_is_refused(tmp_path):
    message = config_error(write(tmp_path, "pipeline:\n  tags: &t {a: *t}\n"))
    assert "line 2 column 9: an alias refers to a value that contains it" in message


def test_a_few_aliases_are_fine(tmp_path):
    text = "pipeline:\n  tags: &tags {team: ml, cost-centre: '42'}\n  parameters: *tags\n"
    config = load_config(write(tmp_path, text), environ={})
    assert config.pipeline.parameters == {"team": "ml", "cost-centre": "42"}


def test_a_huge_file_is_refused_without_reading_it_whole(tmp_path):
    path = write(tmp_path, "# " + "x" * MAX_CONFIG_BYTES + "\nregion: eu-west-1\n")
    assert f"more than {MAX_CONFIG_BYTES} bytes" in config_error(path)


def test_deep_nesting_is_a_config_error(tmp_path):
    message = config_error(write(tmp_path, "a: " + "[" * 5000 + "]" * 5000 + "\n"))
    assert "nested too deeply" in message


# -- first_error, shown, mask: the helpers every one-line validation error uses ----------------


class _Echoing(BaseModel):
    token: str

    @field_validator("token")
    @classmethod
    def _echo(cls, value: str) -> str:
        raise ValueError(f"{value} is not a token we know")


def test_first_error_never_echoes_a_secret_or_a_long_input():
    with pytest.raises(ValidationError) as info:
        _Echoing(token=NEW_PAT)
    assert first_error(info.value) == (
        "token",
        "<84-character value, looks like a secret; not shown> is not a token we know",
    )
    with pytest.raises(ValidationError) as info:
        _Echoing(token="y" * 10_000)
    _key, message = first_error(info.value)
    assert message == f"{'y' * 80}…(10000 chars) is not a token we know"


def test_first_error_cuts_keys():
    with pytest.raises(ValidationError) as info:
        _Echoing.model_validate({"token": "t", "z" * 1000: 1})
    assert "z" * 81 not in first_error(info.value)[0]


def test_shown_is_bounded_for_every_kind_of_value():
    assert shown("eu-west-1") == "'eu-west-1'"
    assert shown(CLASSIC_PAT) == "<52-character value, looks like a secret; not shown>"
    assert shown(f"Bearer {CLASSIC_PAT}").startswith("<59-character value, looks like a secret")
    assert shown(3) == "3" and shown(None) == "None" and shown(True) == "True"
    assert shown({"a": 1}) == "a mapping of 1 key" and shown([1, 2]) == "a list of 2 items"
    assert shown("a\nb") == "'a\\nb'"
    assert len(shown(2.5**100)) < 100


def test_mask_still_stars_by_default_and_can_describe():
    assert mask("token abcd and abcdef", ["abcd", "abcdef"]) == "token *** and ***"
    assert mask("token abcdef", ["abcdef"], lambda s: f"<{len(s)}>") == "token <6>"


# -- item 4: unreadable files are config errors naming file, line and column -------------------


def test_a_non_utf8_byte_names_file_line_and_column(tmp_path):
    path = write(tmp_path, b"region: eu-west-1\npipeline:\n  name: caf\xe9\n")
    assert config_error(path) == (
        f"{path}: line 3 column 12: byte 0xe9 is not UTF-8; save the file as UTF-8"
    )


def test_utf16_is_named(tmp_path):
    path = write(tmp_path, "region: eu-west-1\n".encode("utf-16"))
    assert "line 1 column 1: byte 0xff is not UTF-8; it is UTF-16; save the file as UTF-8" in (
        config_error(path)
    )


def test_a_utf8_byte_order_mark_is_fine(tmp_path):
    path = write(tmp_path, "region: eu-west-1\n".encode("utf-8-sig"))
    assert load_config(path, environ={}).region == "eu-west-1"


def test_a_control_character_names_line_and_column(tmp_path):
    path = write(tmp_path, "region: eu-west-1\npipeline:\n  name: a\x01b\n")
    assert config_error(path) == (
        f"{path}: line 3 column 10: character U+0001 is not allowed in YAML; remove it"
    )


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ("pipeline: [\n", "line 2 column 1", "expected the node content"),
        ("region: eu-west-1\n  pipeline: x\n", "line 2 column 11", "mapping values are not"),
        ("a: 1\n---\nb: 2\n", "line 2 column 1", "expected a single document"),
        ("region: &r x\nb: &r y\n", "line 2 column 4", "found duplicate anchor 'r'"),
        ("region: *nowhere\n", "line 1 column 9", "found undefined alias 'nowhere'"),
    ],
)
def test_a_yaml_syntax_error_names_file_line_and_column(tmp_path, text, where, problem):
    path = write(tmp_path, text)
    message = config_error(path)
    assert message.startswith(f"{path}: {where}: ")
    assert problem in message
    assert message.endswith("; fix the YAML syntax")


def test_a_value_yaml_cannot_build_names_its_line(tmp_path):
    message = config_error(write(tmp_path, "region: eu-west-1\nmodel_package_group: 2024-13-45\n"))
    assert "line 2 column 22: cannot read the value (month must be in 1..12)" in message
    message = config_error(write(tmp_path, f"pipeline:\n  parallelism: {'9' * 5000}\n"))
    assert "line 2 column 16: cannot read the value" in message


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "~\n"])
def test_an_empty_file_is_an_error_not_silent_defaults(tmp_path, text):
    path = write(tmp_path, text)
    assert config_error(path) == (
        f"{path}: empty (no settings); add settings, write {{}} for the defaults, or delete it"
    )
    assert load_config(write(tmp_path, "{}\n"), environ={}).region is None


@pytest.mark.parametrize(
    ("text", "kind"), [("- a\n- b\n", "a list"), ("hello\n", "a string"), ("42\n", "a number")]
)
def test_a_top_level_that_is_not_a_mapping(tmp_path, text, kind):
    path = write(tmp_path, text)
    assert config_error(path) == f"{path}: expected a mapping of keys at the top level, not {kind}"


def test_a_directory_is_an_error_explicit_or_default(tmp_path, monkeypatch):
    directory = tmp_path / "bridge.yaml"
    directory.mkdir()
    assert config_error(directory) == (
        f"{directory}: is a directory, not a config file; pass a file to --config"
    )
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"^bridge.yaml: is a directory"):
        load_config(environ={})


def test_an_unreadable_file(tmp_path):
    path = write(tmp_path, "region: eu-west-1\n")
    path.chmod(0)
    try:
        if path.read_bytes():  # root reads anything
            pytest.skip("running as root")
    except PermissionError:
        assert config_error(path) == f"{path}: cannot read (Permission denied)"
    finally:
        path.chmod(0o600)


# -- through the CLI: one line, exit 2 ---------------------------------------------------------

BAD_FILES = {
    "non-utf8": b"region: eu-west-1\npipeline:\n  name: caf\xe9\n",
    "syntax": b"pipeline: [\n",
    "empty": b"",
    "list": b"- a\n- b\n",
    "billion-laughs": BILLION_LAUGHS.encode(),
    "secret": f"aws:\n  role_arn: {CLASSIC_PAT}\n".encode(),
    "long": f"pipeline:\n  name: {'x' * 100_000}\n".encode(),
}
COMMANDS = [
    ["pipeline", "status", "--dry-run"],
    ["pipeline", "upsert", "--dry-run"],
    ["pipeline", "build"],
    ["ado", "approvals", "list"],
]


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, lines
    assert len(lines[0]) < 400
    assert CLASSIC_PAT not in lines[0] and "internal error" not in lines[0]
    return lines[0]


@pytest.mark.parametrize("argv", COMMANDS)
@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_cli_prints_one_line_and_exits_2_with_config_flag(
    tmp_path, monkeypatch, capsys, argv, case
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TF_BUILD", raising=False)
    path = write(tmp_path, BAD_FILES[case], name="custom.yaml")
    assert main([*argv, "--config", str(path)]) == 2
    assert _one_error_line(capsys).startswith(f"error: {path}: ")


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_cli_prints_one_line_and_exits_2_with_default_file(tmp_path, monkeypatch, capsys, case):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TF_BUILD", raising=False)
    write(tmp_path, BAD_FILES[case])
    assert main(["pipeline", "status", "--dry-run"]) == 2
    assert _one_error_line(capsys).startswith("error: bridge.yaml: ")


def test_cli_directory_as_bridge_yaml(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TF_BUILD", raising=False)
    (tmp_path / "bridge.yaml").mkdir()
    assert main(["pipeline", "status", "--dry-run"]) == 2
    assert _one_error_line(capsys) == (
        "error: bridge.yaml: is a directory, not a config file; pass a file to --config"
    )


# --------------------------------------------------------------------------- stage configs
def test_stage_config_errors_never_echo_a_secret_and_name_the_file(tmp_path):
    import json

    from bridge.settings.stage import load_stage_config

    pat = "a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6q7r8s9t0u1v2w3x4y5z6"  # 52 chars, a classic PAT
    bad = tmp_path / "staging.json"
    bad.write_text(json.dumps({"stage": "staging", "execution_role_arn": pat}))
    with pytest.raises(ConfigError) as info:
        load_stage_config(bad)
    assert pat not in str(info.value) and pat[:20] not in str(info.value)
    binary = tmp_path / "production.json"
    binary.write_bytes(b'{"stage": "production\xe9"}')
    with pytest.raises(ConfigError, match=r"production\.json: byte 0xe9 .* is not UTF-8"):
        load_stage_config(binary)
