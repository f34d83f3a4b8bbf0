"""``smbridge config show``: the effective configuration, and where each value came from.

A value comes from a flag (``--region``, ``--profile``, ``--role-arn``, ``--no-role``,
``--web-identity``), from the environment (an ``SMBRIDGE_<KEY>`` override, or the AWS variable a
command falls back to: ``AWS_REGION``, ``AWS_PROFILE``…), from the config file, or is the default.
Secrets are never shown: credential variables and any value shaped like a secret are masked.

The provenance is worked out here from the loaded config (pydantic's ``model_fields_set``) and
the environment, with the same variable names :mod:`bridge.settings.bridge_config` reads.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bridge.cli.common import add_actions, add_command
from bridge.core.output import Reporter

SHOW_HELP = "the effective configuration and where each value came from (secrets masked)"

# Variables read outside bridge.yaml's overrides, shown when set. Credentials are masked.
AWS_VARIABLES = (
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)
# The Azure DevOps credential, in the order smbridge looks for it (README: Azure DevOps side).
ADO_VARIABLES = ("SYSTEM_ACCESSTOKEN", "SMBRIDGE_ADO_PAT", "AZURE_DEVOPS_EXT_PAT")
SECRET_VARIABLES = frozenset(
    {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", *ADO_VARIABLES}
)
SECRET_WORDS = ("secret", "token", "password", "pat")
# Key path → the flag that overrides it.
FLAGS = {
    ("region",): "region",
    ("aws", "profile"): "profile",
    ("aws", "role_arn"): "role_arn",
    ("aws", "web_identity"): "web_identity",
}
# Key path → the AWS variables a command falls back to when bridge.yaml leaves it unset.
AWS_FALLBACKS = {
    ("region",): ("AWS_REGION", "AWS_DEFAULT_REGION"),
    ("aws", "profile"): ("AWS_DEFAULT_PROFILE", "AWS_PROFILE"),
}


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    actions = add_actions(parser)
    add_command(
        actions,
        "show",
        SHOW_HELP,
        _cmd_show,
        uses=("config", "aws"),
        description=SHOW_HELP
        + ". Flags given here (--region, --profile, --role-arn, --no-role, --web-identity) "
        "are shown as the commands would apply them.",
    )


# -- provenance ---------------------------------------------------------------------------------


def override_variables(
    path: tuple[str, ...], environ: Mapping[str, str] | None = None
) -> list[str]:
    """The ``SMBRIDGE_*`` variables that set ``path`` or something inside it (a mapping's key)."""
    from bridge.settings.bridge_config import ENV_PREFIX, NOT_OVERRIDES

    environ = os.environ if environ is None else environ
    found = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in NOT_OVERRIDES:
            continue
        keys = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        if keys[: len(path)] == path:
            found.append(name)
    return found


def setting_source(
    config: Any, path: tuple[str, ...], environ: Mapping[str, str] | None = None
) -> tuple[str, str]:
    """Where bridge.yaml's ``path`` came from: ("environment", variable), ("file", path) or
    ("default", "")."""
    variables = override_variables(path, environ)
    if variables:
        return "environment", ", ".join(variables)
    node = config
    for key in path:
        if node is None or key not in getattr(node, "model_fields_set", ()):
            return "default", ""
        node = getattr(node, key)
    return "file", config.source


def source_text(config: Any, path: tuple[str, ...]) -> str:
    """:func:`setting_source` for an error message: ``aws.role_arn in bridge.yaml``."""
    kind, detail = setting_source(config, path)
    key = ".".join(path)
    if kind == "environment":
        return detail
    if kind == "file":
        return f"{key} in {detail}"
    return f"{key} default"


def _leaves(model: Any, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    from pydantic import BaseModel

    leaves = []
    for name, field in type(model).model_fields.items():
        if field.exclude:
            continue
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            leaves.extend(_leaves(value, (*prefix, name)))
        else:
            leaves.append(((*prefix, name), value))
    return leaves


def _jsonable(value: Any) -> Any:
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def _is_secret(key: str, value: Any) -> bool:
    from bridge.errors import looks_like_secret

    if any(word in key.lower().replace(".", "_").split("_") for word in SECRET_WORDS):
        return value not in (None, "")
    return looks_like_secret(json.dumps(value, default=str))


def _masked(value: Any) -> str:
    return f"<set, {len(str(value))} characters, masked>"


def effective_settings(
    args: argparse.Namespace, config: Any, environ: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """Every bridge.yaml key: its value as the commands would use it, and its source."""
    environ = os.environ if environ is None else environ
    rows = []
    for path, raw in _leaves(config):
        value = _jsonable(raw)
        kind, detail = setting_source(config, path, environ)
        flag = FLAGS.get(path)
        if flag and flag in args.given:
            value, kind, detail = getattr(args, flag), "flag", "--" + flag.replace("_", "-")
        if path == ("aws", "role_arn") and args.no_role:
            value, kind, detail = None, "flag", "--no-role"
        if path == ("aws", "web_identity") and args.no_role:
            value, kind, detail = False, "flag", "--no-role"
        if kind == "default" and value is None:
            variable = next((v for v in AWS_FALLBACKS.get(path, ()) if environ.get(v)), None)
            if variable:
                value, kind, detail = environ[variable], "environment", variable
        rows.append({"key": ".".join(path), "value": value, "source": kind, "from": detail})
    return rows


def environment_rows(environ: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The variables smbridge reads besides the overrides, as set now (credentials masked)."""
    from bridge.settings.bridge_config import NOT_OVERRIDES

    environ = os.environ if environ is None else environ
    names = [*AWS_VARIABLES, *ADO_VARIABLES, *sorted(NOT_OVERRIDES - {"SMBRIDGE_CONFIG"})]
    rows = []
    for name in dict.fromkeys(names):
        if not environ.get(name):
            continue
        value = environ[name]
        masked = name in SECRET_VARIABLES or _is_secret(name, value)
        if name == "SMBRIDGE_ROUTES" and not masked:
            value = f"<{len(value)} characters of routing JSON>"
        rows.append({"name": name, "value": _masked(value) if masked else value, "masked": masked})
    return rows


def _config_file(args: argparse.Namespace) -> dict[str, Any]:
    from bridge.settings.bridge_config import DEFAULT_CONFIG_FILE

    if "config" in args.given:
        source, detail = "flag", "--config"
    elif args.config:
        source, detail = "environment", "SMBRIDGE_CONFIG"
    else:
        source, detail = "default", f"./{DEFAULT_CONFIG_FILE}"
    path = args.config or DEFAULT_CONFIG_FILE
    return {"path": path, "found": Path(path).is_file(), "source": source, "from": detail}


# -- the command --------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


def _cmd_show(args: argparse.Namespace, reporter: Reporter) -> int:
    from bridge.cli.common import load_config

    config = load_config(args)
    if args.no_role and (args.role_arn or args.web_identity):
        from bridge.errors import UserError

        flag = "--role-arn" if args.role_arn else "--web-identity"
        raise UserError(f"--no-role and {flag}: pass one of them")
    file = _config_file(args)
    settings = effective_settings(args, config)
    environment = environment_rows()
    for row in settings:
        if _is_secret(row["key"], row["value"]):
            reporter.add_secret(_text(row["value"]))
            row["value"] = _masked(_text(row["value"]))
    for name in SECRET_VARIABLES:
        reporter.add_secret(os.environ.get(name))

    found = "" if file["found"] else " (not found: defaults)"
    reporter.info(f"config file: {file['path']}{found}, from {file['source']} {file['from']}")
    reporter.table(
        ["KEY", "VALUE", "SOURCE"],
        [
            [row["key"], _text(row["value"]), f"{row['source']} {row['from']}".strip()]
            for row in settings
        ],
    )
    if environment:
        reporter.info("")
        reporter.info("environment (credentials masked):")
        reporter.table(["VARIABLE", "VALUE"], [[row["name"], row["value"]] for row in environment])
    reporter.result({"config_file": file, "settings": settings, "environment": environment})
    return 0
