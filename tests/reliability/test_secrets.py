"""Secrets never leave in output: three sentinel credentials through every failure path.

The sentinels have the shapes of the real things (seeded, the seed is in every failure message):

* an Azure DevOps PAT in the current format: 84 letters and digits (the shape bridge/errors.py
  recognises; Microsoft Learn, "Use personal access tokens");
* an Entra ID client secret: 3 URL-unreserved characters, a version digit, ``Q~``, 34 more
  (microsoft/security-utilities, AadClientAppIdentifiableCredentials SEC101/050), with ``.``,
  ``-`` and ``~`` inside, carried in the service principal JSON that
  bridge/azure_devops/credentials.py parses (``{"tenantId", "clientId", "clientSecret"}``);
* an AWS secret access key: 40 characters of the base64 alphabet (IAM user guide, "Managing
  access keys"); set as ``AWS_SECRET_ACCESS_KEY`` in every case below.

Failure paths are rows of a table: :data:`CLI_PATHS` (the ``smbridge`` command, run in four
modes: text, ``--debug``, ``--output json``, and on an agent with ``--debug``) and
:data:`LAMBDA_PATHS` (the trigger's handler as Lambda runs it: no CLI reporter to mask
anything, so what counts is its powertools log lines, the exception and its traceback, which
the Lambda runtime writes to CloudWatch). Adding a path is one line.

The services answer as a proxy or a broken service might: every answer quotes what the request
carried (the ``Authorization`` header, the PAT it decodes to, the JSON members of a secret, the
form body sent to Entra ID), in the body, in the OAuth ``error`` field and in an
``X-RateLimit-*`` header (which the trigger logs). A leak is any of, in stdout, stderr or logs:
the sentinel, its base64 (standard and URL-safe, with and without padding), the base64 of
``:<sentinel>`` (the ``Basic`` credentials of a PAT), or the first or last 8 characters of any
of these (Azure Pipelines masks whole secrets only, never parts: Microsoft Learn, "Logging
commands", "We never mask substrings of secrets").
"""

from __future__ import annotations

import base64
import io
import json
import random
import string
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import boto3
import pytest
import requests
import responses
from botocore.stub import Stubber

from bridge.sandbox.ado_contract import REFERENCE_DIR

SEED = 20261201
_rng = random.Random(SEED)
_ALNUM = string.ascii_letters + string.digits
_UNRESERVED = _ALNUM + "._~-"


def _pick(alphabet: str, n: int) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


PAT = _pick(_ALNUM, 84)
# '.', '-' and '~' in the middle: each splits the secret for a plain "long token" pattern
ENTRA_SECRET = _pick(_UNRESERVED, 3) + "8Q~" + _pick(_ALNUM, 10) + ".-~" + _pick(_UNRESERVED, 21)
AWS_SECRET = _pick(_ALNUM + "+/", 20) + "/" + _pick(_ALNUM + "+/", 19)
ACCESS_TOKEN = _pick(_ALNUM, 40) + "." + _pick(_ALNUM, 60)  # what Entra ID issues for the SP
SENTINELS = {"PAT": PAT, "Entra client secret": ENTRA_SECRET, "AWS secret key": AWS_SECRET}
SP_JSON = json.dumps(
    {
        "tenantId": "8f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b",
        "clientId": "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
        "clientSecret": ENTRA_SECRET,
    }
)

EVENT = REFERENCE_DIR / "sagemaker-events" / "model-package-approved.json"
ROUTES = json.dumps({"default": {"organization": "contoso", "project": "mlops", "pipelineId": 12}})
EXECUTION = "arn:aws:sagemaker:eu-west-1:123456789012:pipeline/demo/execution/abc123"
APPROVAL_ID = "3b3db741-9d03-4e32-a7c0-6c3dfc2013c1"
ORG = ["--organization", "contoso", "--project", "mlops"]


# -- what counts as a leak ------------------------------------------------------------------------


def encoded_forms(secret: str) -> dict[str, str]:
    """The secret and the encodings it travels in (``Basic`` credentials are base64 of
    ``:secret``)."""
    forms = {"itself": secret}
    for prefix in ("", ":"):
        raw = (prefix + secret).encode()
        for kind, encode in (("base64", base64.b64encode), ("urlsafe", base64.urlsafe_b64encode)):
            text = encode(raw).decode()
            forms[f"{kind}({prefix}secret)"] = text
            forms[f"{kind}({prefix}secret) unpadded"] = text.rstrip("=")
    return forms


def leak_patterns(secret: str) -> dict[str, str]:
    patterns = {}
    for name, form in encoded_forms(secret).items():
        patterns[name] = form
        patterns[f"first 8 of {name}"] = form[:8]
        patterns[f"last 8 of {name}"] = form[-8:]
    return patterns


def leaks(text: str, secrets: dict[str, str]) -> list[str]:
    """What of ``secrets`` shows in ``text`` (names only: a failure message must not print the
    sentinel either)."""
    return [
        f"{label}: {name}"
        for label, secret in secrets.items()
        for name, pattern in leak_patterns(secret).items()
        if pattern in text
    ]


def test_the_leak_check_sees_every_form():
    """The check itself must fail on each form, or every row below passes for nothing."""
    for secret in SENTINELS.values():
        for name, form in encoded_forms(secret).items():
            assert leaks(f"x {form} y", {"s": secret}), name
        assert leaks(secret[:8], {"s": secret}) and leaks(secret[-8:], {"s": secret})
        assert not leaks(secret[1:8] + "…" + secret[-7:], {"s": secret})
    assert len(PAT) == 84 and len(ENTRA_SECRET) == 40
    assert len(AWS_SECRET) == 40


# -- the services: answers that quote what they were sent -----------------------------------------


def _quoted(request: Any) -> str:
    """Everything a request carried that a careless service might repeat."""
    parts = []
    auth = request.headers.get("Authorization", "")
    if auth:
        parts.append(auth)
        scheme, _, credentials = auth.partition(" ")
        if scheme == "Basic":
            password = base64.b64decode(credentials).decode().partition(":")[2]
            parts.append(password)
            try:
                document = json.loads(password)
            except ValueError:
                document = None
            if isinstance(document, dict):
                parts += [str(v) for v in document.values()]
        else:
            parts.append(credentials)
    body = request.body
    if isinstance(body, bytes):
        body = body.decode()
    if body:
        parts.append(body)
        parts += [v for values in parse_qs(body).values() for v in values]
    return " | ".join(parts)


def _run_json() -> dict[str, Any]:
    return {
        "id": 7,
        "name": "20261201.1",
        "state": "inProgress",
        "_links": {"web": {"href": "https://dev.azure.com/contoso/mlops/_build/results?buildId=7"}},
    }


@dataclass
class EchoServices:
    """Azure DevOps and Entra ID on ``responses``; ``ado`` / ``entra`` say how each answers:
    ``ok``, an HTTP status (``401``, ``203``, ``429``, ``500``...), ``timeout``, ``connection``,
    and for Entra ``badtoken`` (a 200 whose token holds a line break)."""

    ado: str = "ok"
    entra: str = "ok"
    hits: dict[str, int] = field(default_factory=lambda: {"ado": 0, "entra": 0})

    def install(self, mock: responses.RequestsMock) -> EchoServices:
        import re

        for method in ("GET", "POST", "PATCH"):
            mock.add_callback(method, re.compile(r"https://dev\.azure\.com/.*"), self._ado)
        mock.add_callback(
            "POST", re.compile(r"https://login\.microsoftonline\.com/.*"), self._entra
        )
        return self

    @staticmethod
    def _transport(kind: str, request: Any) -> None:
        if kind == "timeout":
            raise requests.ReadTimeout(f"read timed out: {_quoted(request)}")
        if kind == "connection":
            raise requests.ConnectionError(f"connection reset: {_quoted(request)}")

    def _ado(self, request: Any) -> tuple[int, dict[str, str], str]:
        self.hits["ado"] += 1
        self._transport(self.ado, request)
        quoted = _quoted(request)
        if self.ado == "ok":
            if request.method == "POST":
                return 200, {"Content-Type": "application/json"}, json.dumps(_run_json())
            return 200, {"Content-Type": "application/json"}, json.dumps({"count": 0, "value": []})
        status = int(self.ado)
        if status == 203:
            page = f"<html><body>Sign in ({quoted})</body></html>"
            return 203, {"Content-Type": "text/html; charset=utf-8"}, page
        headers = {
            "Content-Type": "application/json",
            "Retry-After": "0",
            "X-RateLimit-Resource": quoted,
        }
        body = {"$id": "1", "message": f"denied for {quoted}", "typeKey": quoted}
        return status, headers, json.dumps(body)

    def _entra(self, request: Any) -> tuple[int, dict[str, str], str]:
        self.hits["entra"] += 1
        self._transport(self.entra, request)
        if self.entra == "ok":
            body = {"token_type": "Bearer", "expires_in": 3599, "access_token": ACCESS_TOKEN}
            return 200, {"Content-Type": "application/json"}, json.dumps(body)
        if self.entra == "badtoken":
            token = ACCESS_TOKEN[:50] + "\n" + ACCESS_TOKEN[50:]
            body = {"token_type": "Bearer", "expires_in": 3599, "access_token": token}
            return 200, {"Content-Type": "application/json"}, json.dumps(body)
        secret = parse_qs(request.body).get("client_secret", [""])[0]
        body = {
            "error": secret,  # RFC 6749 says an error code; a broken proxy says anything
            "error_description": f"AADSTS7000215: Invalid client secret: {_quoted(request)}",
        }
        return int(self.entra), {"Content-Type": "application/json"}, json.dumps(body)


# -- the CLI paths --------------------------------------------------------------------------------


def _stubbed_sagemaker_error() -> Any:
    """A SageMaker client whose DescribePipelineExecution fails with a message quoting the
    caller's secret key (AWS never sends it back; a proxy might)."""
    client = boto3.client("sagemaker", region_name="eu-west-1")
    stubber = Stubber(client)
    stubber.add_client_error(
        "describe_pipeline_execution",
        service_error_code="AccessDeniedException",
        service_message=f"signature for key {AWS_SECRET} is not valid",
        http_status_code=400,
    )
    stubber.activate()
    return client


class _Clients:
    def __init__(self, **clients: Any) -> None:
        self._clients = clients

    def client(self, service: str) -> Any:
        return self._clients[service]


def _aws_echo(monkeypatch: pytest.MonkeyPatch) -> None:
    from bridge.cli import clients

    monkeypatch.setattr(
        clients, "aws_clients", lambda *a, **k: _Clients(sagemaker=_stubbed_sagemaker_error())
    )


def _aws_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    import botocore.endpoint
    from botocore.exceptions import EndpointConnectionError

    def unreachable(self: Any, operation_model: Any, request_dict: Any) -> Any:
        raise EndpointConnectionError(endpoint_url=f"https://proxy.invalid/{AWS_SECRET}")

    monkeypatch.setattr(botocore.endpoint.Endpoint, "make_request", unreachable)


def _internal_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug: an exception nobody expected, whose message quotes a secret it was handed."""
    from bridge.cli import pipeline

    def fail(args: Any, reporter: Any) -> int:
        raise RuntimeError(f"unexpected answer for client secret {ENTRA_SECRET}")

    monkeypatch.setattr(pipeline, "_cmd_status", fail)


BRIDGE_YAML = "region: eu-west-1\npipeline:\n  name: demo\n"


@dataclass(frozen=True)
class CliPath:
    """One failure path of the CLI: the command line, its environment and bridge.yaml, how
    the services answer, the exit code and a text that proves the path was taken."""

    name: str
    argv: list[str]
    code: int
    shows: str
    env: dict[str, str] = field(default_factory=dict)
    config: str = BRIDGE_YAML
    ado: str | None = None  # None: no Azure DevOps call expected
    entra: str | None = None
    setup: Callable[[pytest.MonkeyPatch], None] | None = None  # AWS answers, a fault


def _trigger(**env: str) -> dict[str, str]:
    return {"SMBRIDGE_ROUTES": ROUTES, "SMBRIDGE_MAX_ATTEMPTS": "1", **env}


SIMULATE = ["trigger", "simulate", "--event", str(EVENT)]
LIST = ["ado", "approvals", "list", *ORG]
PAT_ENV = {"SMBRIDGE_ADO_PAT": PAT}
SP_ENV = {"SMBRIDGE_ADO_PAT": SP_JSON}
STATUS = ["pipeline", "status", "--execution-arn", EXECUTION]
EVERY_CREDENTIAL = {
    "SMBRIDGE_ADO_PAT": PAT,
    "AZURE_DEVOPS_EXT_PAT": SP_JSON,
    "SYSTEM_ACCESSTOKEN": ACCESS_TOKEN,
}

# fmt: off
CLI_PATHS = [
    # Azure DevOps refuses or fails: ado approvals (a GET, retried) and approve (a PATCH)
    CliPath("ado list: 401 quoting the credential", LIST, 6, "HTTP 401", PAT_ENV, ado="401"),
    CliPath("ado list: 203 sign-in page quoting it", LIST, 6, "sign-in page", PAT_ENV, ado="203"),
    CliPath("ado list: 429 quoting it", LIST, 3, "HTTP 429", PAT_ENV, ado="429"),
    CliPath("ado list: 500 quoting it", LIST, 3, "HTTP 500", PAT_ENV, ado="500"),
    CliPath("ado list: time-out", LIST, 3, "timed out", PAT_ENV, ado="timeout"),
    CliPath("ado list: connection error", LIST, 3, "connection failed", PAT_ENV, ado="connection"),
    CliPath("ado list: System.AccessToken, 401", LIST, 6, "HTTP 401",
            {"SYSTEM_ACCESSTOKEN": PAT}, ado="401"),
    CliPath("ado list: System.AccessToken with a line break", LIST, 6, "bearer token",
            {"SYSTEM_ACCESSTOKEN": PAT[:40] + "\n" + PAT[40:]}),
    CliPath("ado list: service principal JSON as the PAT, 401", LIST, 6, "HTTP 401", SP_ENV,
            ado="401"),
    CliPath("ado approve: 500 quoting the credential",
            ["ado", "approvals", "approve", APPROVAL_ID, "--comment", "ok", *ORG], 3, "HTTP 500",
            PAT_ENV, ado="500"),
    # the trigger, run locally: the Runs API and Entra ID
    CliPath("simulate: Runs 401", SIMULATE, 6, "HTTP 401", _trigger(**PAT_ENV), ado="401"),
    CliPath("simulate: Runs 203", SIMULATE, 6, "sign-in page", _trigger(**PAT_ENV), ado="203"),
    CliPath("simulate: Runs 500, retried", SIMULATE, 3, "retrying Azure DevOps",
            _trigger(SMBRIDGE_MAX_ATTEMPTS="2", **PAT_ENV), ado="500"),
    CliPath("simulate: Runs time-out", SIMULATE, 3, "timed out", _trigger(**PAT_ENV),
            ado="timeout"),
    CliPath("simulate: Runs connection error", SIMULATE, 3, "connection failed",
            _trigger(**PAT_ENV), ado="connection"),
    CliPath("simulate: Entra 401 quoting the client secret", SIMULATE, 6, "Entra ID refused",
            _trigger(**SP_ENV), entra="401"),
    CliPath("simulate: Entra time-out", SIMULATE, 6, "Entra ID token request failed",
            _trigger(**SP_ENV), entra="timeout"),
    CliPath("simulate: Entra token with a line break", SIMULATE, 6, "not a bearer token",
            _trigger(**SP_ENV), entra="badtoken"),
    CliPath("simulate: token issued, Runs 401 quoting it", SIMULATE, 6, "HTTP 401",
            _trigger(**SP_ENV), ado="401", entra="ok"),
    CliPath("simulate: secret JSON with the PAT as a key", SIMULATE, 6, "keys found",
            _trigger(SMBRIDGE_ADO_PAT=json.dumps({PAT: ""}))),
    CliPath("simulate: secret JSON cut short", SIMULATE, 6, "not valid",
            _trigger(SMBRIDGE_ADO_PAT='{"pat": "' + PAT)),
    # config show: every credential variable, secrets in free-text settings and overrides
    CliPath("config show: every credential variable", ["config", "show"], 0, "masked",
            EVERY_CREDENTIAL),
    CliPath("config show: secrets in bridge.yaml", ["config", "show"], 0, "pipeline.description",
            config=BRIDGE_YAML + f"  description: {ENTRA_SECRET}\n  tags:\n    a: {PAT}\n"
            f"    b: {AWS_SECRET}\n"),
    CliPath("config show: secrets in SMBRIDGE_* overrides", ["config", "show"], 0, "masked",
            {"SMBRIDGE_PIPELINE__DESCRIPTION": ENTRA_SECRET, "SMBRIDGE_AWS__PROFILE": AWS_SECRET,
             "SMBRIDGE_PIPELINE__TAGS__TEAM": PAT}),
    # bad config: a secret where a setting belongs
    CliPath("bridge.yaml: aws.role_arn is the Entra secret", STATUS, 2, "aws.role_arn",
            config=BRIDGE_YAML + f"aws:\n  role_arn: {ENTRA_SECRET}\n"),
    CliPath("bridge.yaml: aws.profile is the AWS secret key", STATUS, 6, "AWS profile",
            config=BRIDGE_YAML + f"aws:\n  profile: {AWS_SECRET}\n"),
    CliPath("bridge.yaml: region is the PAT", STATUS, 2, "region", config=f"region: {PAT}\n"),
    CliPath("SMBRIDGE_AWS__PROFILE is the AWS secret key", STATUS, 6, "AWS profile",
            {"SMBRIDGE_AWS__PROFILE": AWS_SECRET}),
    CliPath("SMBRIDGE_AWS__ROLE_ARN is the Entra secret", STATUS, 2, "SMBRIDGE_AWS__ROLE_ARN",
            {"SMBRIDGE_AWS__ROLE_ARN": ENTRA_SECRET}),
    CliPath("--region is the AWS secret key", [*STATUS, "--region", AWS_SECRET], 2, "--region"),
    CliPath("--profile is the Entra secret", [*STATUS, "--profile", ENTRA_SECRET], 6,
            "AWS profile"),
    CliPath("-o is the PAT", [*STATUS, "-o", PAT], 2, "invalid choice"),
    CliPath("--param without '=' is the PAT", ["pipeline", "start", "--param", PAT, "--dry-run"],
            2, "expected NAME=VALUE"),
    # AWS fails
    CliPath("AWS answers an error quoting the secret key", STATUS, 3, "AccessDenied",
            setup=_aws_echo),
    CliPath("AWS unreachable, the URL holding the key", STATUS, 3, "Could not connect",
            setup=_aws_unreachable),
    # a bug
    CliPath("an unexpected exception quoting a secret", STATUS, 1, "internal error",
            setup=_internal_error),
]
# fmt: on
MODES = {
    "text": ([], {}),
    "debug": (["--debug"], {}),
    "json": (["--output", "json"], {}),
    "agent-debug": (["--debug"], {"TF_BUILD": "True"}),
}


@pytest.fixture
def trigger_log_stream():
    """The trigger's powertools logger writes to whatever stream the CLI gives it (stderr,
    captured here); put its own back afterwards."""
    from bridge.trigger.handler import logger

    original = logger.registered_handler.stream
    yield
    logger.registered_handler.stream = original


def run_cli(path: CliPath, mode: str, tmp: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> str:
    from bridge.ado import setup as ado_setup
    from bridge.cli.app import main

    monkeypatch.chdir(tmp)
    (tmp / "bridge.yaml").write_text(path.config, encoding="utf-8")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    flags, mode_env = MODES[mode]
    for name, value in {**path.env, **mode_env}.items():
        monkeypatch.setenv(name, value)
    if path.setup is not None:
        path.setup(monkeypatch)
    real_connect = ado_setup.connect

    def connect(*args: Any, **kwargs: Any) -> Any:  # retried GETs without waiting
        client = real_connect(*args, **kwargs)
        client._sleep = lambda seconds: None
        return client

    monkeypatch.setattr(ado_setup, "connect", connect)
    services = EchoServices(ado=path.ado or "ok", entra=path.entra or "ok")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        services.install(mock)
        try:
            code = main([*flags, *path.argv])
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
    captured = capsys.readouterr()
    text = captured.out + "\n" + captured.err
    where = f"{path.name} [{mode}] (seed {SEED})"
    assert code == path.code, f"{where}: exit {code}\n{text[-2000:]}"
    assert path.shows in text, f"{where}: the path was not taken\n{text[-2000:]}"
    if path.ado is not None:
        assert services.hits["ado"] >= 1, where
    if path.entra is not None:
        assert services.hits["entra"] >= 1, where
    return text


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("path", CLI_PATHS, ids=[p.name for p in CLI_PATHS])
def test_no_cli_failure_path_shows_a_secret(
    path: CliPath, mode: str, tmp_path: Path, monkeypatch, capsys, trigger_log_stream
):
    text = run_cli(path, mode, tmp_path, monkeypatch, capsys)
    secrets = {**SENTINELS, "access token": ACCESS_TOKEN}
    assert leaks(text, secrets) == [], f"{path.name} [{mode}] (seed {SEED})"


# -- the trigger in Lambda: logs, the exception, its traceback ------------------------------------


class _Context:
    function_name = "smbridge-trigger"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:eu-west-1:111122223333:function:smbridge-trigger"
    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e812345678"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:smbridge-ado-AbCdEf"


class _Session:
    """What build_runtime asks of a boto3 session: a Secrets Manager client (stubbed)."""

    def __init__(self, secret: str | None, error: bool = False) -> None:
        self.secret = secret
        self.error = error

    def client(self, service: str) -> Any:
        assert service == "secretsmanager", service
        client = boto3.client("secretsmanager", region_name="eu-west-1")
        stubber = Stubber(client)
        for _ in range(4):  # read again after a refused credential
            if self.error:
                stubber.add_client_error(
                    "get_secret_value",
                    service_error_code="AccessDeniedException",
                    service_message=f"not authorized to read {PAT}",
                    http_status_code=400,
                )
            else:
                stubber.add_response(
                    "get_secret_value",
                    {"ARN": SECRET_ARN, "Name": "smbridge-ado", "SecretString": self.secret},
                    {"SecretId": SECRET_ARN},
                )
        stubber.activate()
        return client


@dataclass(frozen=True)
class LambdaPath:
    name: str
    secret: str | None  # the Secrets Manager value (None: SMBRIDGE_ADO_PAT instead)
    shows: str
    ado: str = "ok"
    entra: str = "ok"
    attempts: int = 1
    secret_error: bool = False
    env_pat: str | None = None


# fmt: off
LAMBDA_PATHS = [
    LambdaPath("PAT: Runs 401 quoting it", PAT, "HTTP 401", ado="401"),
    LambdaPath("PAT: Runs 203 sign-in page", PAT, "sign-in page", ado="203"),
    LambdaPath("PAT: Runs 429, retried, given up", PAT, "HTTP 429", ado="429", attempts=2),
    LambdaPath("PAT: Runs 500, retried, given up", PAT, "retrying Azure DevOps", ado="500",
               attempts=3),
    LambdaPath("PAT: Runs time-out", PAT, "timed out", ado="timeout"),
    LambdaPath("PAT: Runs connection error", PAT, "connection failed", ado="connection"),
    LambdaPath('{"pat": …}: Runs 401', json.dumps({"pat": PAT}), "HTTP 401", ado="401"),
    LambdaPath("SP: Entra 401 quoting the client secret", SP_JSON, "Entra ID refused",
               entra="401"),
    LambdaPath("SP: Entra 400 quoting it", SP_JSON, "Entra ID refused", entra="400"),
    LambdaPath("SP: Entra time-out", SP_JSON, "token request failed", entra="timeout"),
    LambdaPath("SP: Entra connection error", SP_JSON, "token request failed",
               entra="connection"),
    LambdaPath("SP: Entra token with a line break", SP_JSON, "not a bearer token",
               entra="badtoken"),
    LambdaPath("SP: token issued, Runs 401 quoting it", SP_JSON, "HTTP 401", ado="401"),
    LambdaPath("SP: token issued, Runs 500 quoting it", SP_JSON, "HTTP 500", ado="500"),
    LambdaPath("secret JSON with the PAT as a key", json.dumps({PAT: True}), "keys found"),
    LambdaPath("secret JSON cut short", '{"clientSecret": "' + ENTRA_SECRET, "not valid"),
    LambdaPath("secret JSON without the client secret's key",
               json.dumps({"tenantId": "t", "clientId": "c", "secret": ENTRA_SECRET}),
               "keys found"),
    LambdaPath("Secrets Manager refuses, quoting the PAT", None, "AccessDeniedException",
               secret_error=True),
    LambdaPath("SMBRIDGE_ADO_PAT (local runs): Runs 401", None, "HTTP 401", ado="401",
               env_pat=PAT),
]
# fmt: on


def run_lambda(path: LambdaPath) -> str:
    """The SQS-delivered event through ``process`` with a runtime built as the Lambda builds it;
    returns everything Lambda would write to CloudWatch: the log lines, and for a failure the
    exception and its traceback (the runtime logs both)."""
    from bridge.trigger.handler import build_runtime, logger, process
    from bridge.trigger.settings import TriggerSettings

    environ = {"SMBRIDGE_ROUTES": ROUTES, "SMBRIDGE_MAX_ATTEMPTS": str(path.attempts)}
    if path.env_pat is not None:
        environ["SMBRIDGE_ADO_PAT"] = path.env_pat
    else:
        environ["SMBRIDGE_ADO_SECRET_ARN"] = SECRET_ARN
    runtime = build_runtime(
        TriggerSettings.from_environ(environ), session=_Session(path.secret, path.secret_error)
    )
    runtime.sleep = lambda seconds: None
    record = {"messageId": "m-1", "eventSource": "aws:sqs", "body": EVENT.read_text()}
    logs = io.StringIO()
    original = logger.registered_handler.stream
    logger.registered_handler.stream = logs
    services = EchoServices(ado=path.ado, entra=path.entra)
    try:
        with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
            services.install(mock)
            try:
                process({"Records": [record]}, _Context(), runtime)
            except Exception as exc:  # what the Lambda runtime logs of an unhandled error
                failure = "".join(traceback.format_exception(exc))
            else:
                failure = ""
    finally:
        logger.registered_handler.stream = original
    where = f"{path.name} (seed {SEED})"
    assert failure, f"{where}: the handler did not fail\n{logs.getvalue()}"
    return logs.getvalue() + "\n" + failure


@pytest.mark.parametrize("path", LAMBDA_PATHS, ids=[p.name for p in LAMBDA_PATHS])
def test_no_trigger_failure_path_logs_a_secret(path: LambdaPath):
    text = run_lambda(path)
    assert path.shows in text, f"{path.name}: the path was not taken\n{text[-2000:]}"
    secrets = {**SENTINELS, "access token": ACCESS_TOKEN}
    assert leaks(text, secrets) == [], f"{path.name} (seed {SEED})"


def test_the_tables_cover_every_kind_of_failure():
    """Each of 401, 203, 429, 500, time-out, connection error, bad config, --debug, --output
    json and config show is a row or a mode; so is each sentinel."""
    answers = {p.ado for p in CLI_PATHS} | {p.entra for p in CLI_PATHS}
    assert {"401", "203", "429", "500", "timeout", "connection"} <= answers
    assert {"401", "203", "429", "500", "timeout", "connection"} <= {p.ado for p in LAMBDA_PATHS}
    assert {"401", "timeout", "badtoken"} <= {p.entra for p in LAMBDA_PATHS}
    assert {"debug", "json", "agent-debug"} <= set(MODES)
    assert any(p.argv[:2] == ["config", "show"] for p in CLI_PATHS)
    rows = json.dumps([p.__dict__ for p in CLI_PATHS], default=str)
    assert all(secret in rows for secret in (PAT, ENTRA_SECRET, AWS_SECRET))


def test_a_request_requests_refuses_is_an_error_without_its_header():
    """requests refuses a header value with a line break before sending, quoting the value in
    its error (``InvalidHeader``); the client says only that the request could not be sent. (The
    credentials refuse such tokens themselves: this is the client's own guard.)"""
    from bridge.azure_devops.approvals import list_approvals
    from bridge.azure_devops.client import AzureDevOpsClient, AzureDevOpsError

    class Broken:
        def authorization(self) -> str:
            return f"Bearer {PAT[:40]}\n{PAT[40:]}"

        def invalidate(self) -> None: ...

        def secrets(self) -> list[str]:
            return []  # nothing to mask with: only the client's wording protects the token

    client = AzureDevOpsClient("contoso", Broken(), sleep=lambda s: None)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        services = EchoServices(ado="401").install(mock)
        with pytest.raises(AzureDevOpsError) as info:
            list_approvals(client, "mlops")
    assert services.hits["ado"] == 0
    text = "".join(traceback.format_exception(info.value))
    assert "could not be sent (InvalidHeader)" in str(info.value)
    assert leaks(text, {"PAT": PAT}) == []
