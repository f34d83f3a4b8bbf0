"""A local AWS: moto's server on 127.0.0.1 (a free port), in a thread of this process.

Everything the bridge sends goes through real botocore clients and real HTTP to it, pointed there
by ``AWS_ENDPOINT_URL`` (botocore's endpoint variable); the model server (InvokeEndpoint) gets
``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``. What moto does not do (it is not AWS): SageMaker jobs
never run (an execution is ``Succeeded`` at once), CloudFormation skips alarms and auto scaling,
EventBridge delivers to SQS but invokes no Lambda, IAM policies and trust are not enforced.
:mod:`bridge.sandbox.moto_fixes` covers the gaps the loop meets.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from bridge.sandbox import moto_fixes

REGION = "eu-west-1"
# moto's default account: what the automation/registry account is in the sandbox
ACCOUNT_ID = "123456789012"
# Not credentials: moto accepts any key. Named as such so nobody mistakes them for real ones.
SANDBOX_KEY_ID = "AKIASANDBOXNOTREAL00"
SANDBOX_SECRET = "sandbox-secret-not-a-real-key"


@dataclass
class AwsEmulator:
    """The running emulator: its URL and the environment that points botocore at it."""

    url: str
    region: str = REGION
    environment: dict[str, str] = field(default_factory=dict)

    def client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client of the emulator (for the sandbox's own set-up calls)."""
        import boto3

        return boto3.session.Session(
            aws_access_key_id=SANDBOX_KEY_ID,
            aws_secret_access_key=SANDBOX_SECRET,
            region_name=self.region,
        ).client(service, endpoint_url=self.url, **kwargs)


def sandbox_environment(
    url: str, *, region: str = REGION, runtime_url: str | None = None
) -> dict[str, str]:
    """The variables that send the bridge's AWS calls to the emulator (and no further)."""
    environment = {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": SANDBOX_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SANDBOX_SECRET,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        # no profile, config file or instance metadata of this machine may leak in
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    if runtime_url:
        environment["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"] = runtime_url
    return environment


@contextmanager
def patched_environ(values: Mapping[str, str], *, remove: tuple[str, ...] = ()) -> Iterator[None]:
    """``os.environ`` with ``values`` set and ``remove`` unset, restored on exit."""
    saved = {key: os.environ.get(key) for key in (*values, *remove)}
    os.environ.update(values)
    for key in remove:
        os.environ.pop(key, None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# variables of this machine that would send calls elsewhere or change credentials
FOREIGN_AWS_VARIABLES = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "SMBRIDGE_AWS__ROLE_ARN",
)


@contextmanager
def aws_emulator(*, region: str = REGION, runtime_url: str | None = None) -> Iterator[AwsEmulator]:
    """Start moto's server, point ``os.environ`` at it, apply the moto fixes; undo all on exit."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log: the demo has its own
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        environment = sandbox_environment(url, region=region, runtime_url=runtime_url)
        with ExitStack() as stack:
            stack.enter_context(patched_environ(environment, remove=FOREIGN_AWS_VARIABLES))
            stack.enter_context(moto_fixes.change_sets_adopt_their_template())
            stack.enter_context(moto_fixes.no_execution_steps())
            yield AwsEmulator(url=url, region=region, environment=environment)
    finally:
        server.stop()
        _reset_moto()


def _reset_moto() -> None:
    """Forget every resource (moto's backends are process-wide)."""
    from moto.moto_api._internal.models import moto_api_backend

    moto_api_backend.reset()
