"""Build a pipeline definition with the SageMaker Python SDK v3: offline and deterministic.

The only module of ``bridge`` that imports the ``sagemaker`` SDK (inside functions, so that the
environment is prepared first). :func:`build_pipeline_definition` loads a ``get_pipeline``-style
function, calls it with a :class:`~sagemaker.core.workflow.pipeline_context.PipelineSession`
subclass and renders the definition exactly once, with no AWS call and no socket:

* AWS access: a boto3 session with placeholder credentials (no credential-provider chain, no
  instance metadata) whose every API call is refused and recorded; a recorded call fails the build,
  even one the SDK swallowed. It is also ``boto3.DEFAULT_SESSION`` while the build runs, because
  importing ``sagemaker.ai_registry`` creates clients on the default session.
* Uploads: the session's ``upload_data`` copies the files into ``staging_dir`` instead and returns a
  content-addressed ``s3://{bucket}/{prefix}/code/{sha256}/...`` URI, so an unchanged source tree
  gives a byte-identical definition in any checkout, process or second. The caller uploads
  :attr:`BuiltDefinition.uploads` when it writes the pipeline.
* Default bucket: fixed up front (the stock session lists or creates buckets to find it).
* Telemetry: opted out through ``sagemaker_config`` (the documented switch), which also keeps the
  developer's own SDK defaults files out of the definition.

Two SDK internals are patched for the duration of a build, only for its session, and guarded by
canary tests in ``tests/unit/test_sagemaker_build.py``:
``SageMakerConfig.validate_sagemaker_config`` (run again on every config lookup, about 2.4 s per
build; skipped for our already-validated config) and ``ModelTrainer._resolve_staging_bucket`` (an
``iam:SimulatePrincipalPolicy`` probe; answered with the bucket we were given).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import inspect
import json
import logging
import os
import re
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any

from bridge.errors import DefinitionError
from bridge.pipeline.definition import BuiltDefinition, StagedUpload, canonical_json

#: The SDK version the definitions are built and tested with; its driver files are part of the
#: training step's code, so another version changes the definition.
PINNED_SDK_VERSION = "3.27.0"
#: ``sagemaker`` 3.27.0 accepts any later 2.x/1.x of its parts, which hold the code that matters
#: (the training drivers live in ``sagemaker-train``): pin them all.
PINNED_SDK_DISTRIBUTIONS = {
    "sagemaker": PINNED_SDK_VERSION,
    "sagemaker-core": "2.27.0",
    "sagemaker-train": "1.27.0",
    "sagemaker-serve": "1.27.0",
    "sagemaker-mlops": "1.27.0",
}

#: Keywords offered to the target function; it receives those its signature accepts.
OFFERED_KEYWORDS = (
    "region",
    "role",
    "default_bucket",
    "pipeline_name",
    "model_package_group_name",
    "sagemaker_session",
)

# Placeholder credentials: the build never signs a request, but without credentials botocore walks
# the provider chain (profiles, SSO, container and instance metadata endpoints) to find some.
_OFFLINE_KEY = "smbridge-offline-build"
_TELEMETRY_OPT_OUT = {
    "SchemaVersion": "1.0",
    "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}},
}
_IGNORED_DIR_NAMES = frozenset({"__pycache__"})
_IGNORED_SUFFIXES = (".pyc", ".pyo")
_MODULE_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def build_pipeline_definition(
    target: str,
    *,
    region: str,
    role_arn: str,
    bucket: str,
    pipeline_name: str,
    model_package_group_name: str,
    staging_dir: Path,
    code_prefix: str | None = None,
) -> BuiltDefinition:
    """Build the definition of the pipeline ``target`` returns, offline.

    Args:
        target: ``path/to/file.py:function`` (relative to the cwd or absolute) or
            ``package.module:function``; the function returns a SageMaker ``Pipeline`` and accepts
            any of :data:`OFFERED_KEYWORDS` (``sagemaker_session`` is required).
        region: AWS region the definition is for (image URIs are regional).
        role_arn: full ARN of the execution role (a bare role name would need an IAM lookup).
        bucket: the pipeline's default bucket; code is staged for ``s3://{bucket}/...``.
        pipeline_name: the SageMaker pipeline's name.
        model_package_group_name: passed through to the function.
        staging_dir: where code files are copied, mirroring their S3 keys
            (``staging_dir/{bucket}/{key}``); created when something is staged.
        code_prefix: S3 key prefix of staged code (default: ``pipeline_name``).

    Returns:
        The canonical definition JSON (keys sorted, compact) and the files to upload.

    Raises:
        DefinitionError: the target is malformed, missing, raises, returns something else than a
            ``Pipeline``, or building it needed AWS.
    """
    if not role_arn.startswith("arn:"):
        raise DefinitionError(
            f"role {role_arn!r} is not an ARN; give the full execution role ARN "
            "(arn:aws:iam::<account>:role/<name>), an offline build cannot look names up"
        )
    kind, location, function_name = parse_target(target)
    if kind == "path":
        _check_file(target, Path(location))  # before paying for the SDK import
    stager = _Stager(Path(staging_dir), bucket, code_prefix or pipeline_name)
    with _sdk_environment(region) as offline:
        try:
            definition = _build(
                target,
                kind,
                location,
                function_name,
                offline,
                stager,
                {
                    "region": region,
                    "role": role_arn,
                    "default_bucket": bucket,
                    "pipeline_name": pipeline_name,
                    "model_package_group_name": model_package_group_name,
                },
            )
        except Exception as error:
            if offline.refused:  # the real cause, whatever the SDK turned it into
                raise _refused_error(target, offline.refused) from error
            raise
        # Telemetry is sent from background threads (opted out, but a regression would show).
        for thread in threading.enumerate():
            if thread.name.startswith("sagemaker-telemetry"):
                thread.join(timeout=2)
        if offline.refused:  # calls the SDK attempted and then swallowed the failure of
            raise _refused_error(target, offline.refused)
    return BuiltDefinition(
        definition_json=canonical_json(definition),
        source=target,
        uploads=stager.uploads(),
    )


def _build(
    target: str,
    kind: str,
    location: str,
    function_name: str,
    offline: _OfflineAws,
    stager: _Stager,
    offered: dict[str, Any],
) -> str:
    """Load the target, call it with an offline session and render the definition once."""
    sdk = _import_sdk()
    with _target_import_path(kind, location):
        function = _load_function(target, kind, location, function_name)
        session = _offline_session_class(sdk)(
            boto_session=offline.boto_session,
            bucket=offered["default_bucket"],
            stager=stager,
            sagemaker_config=_TELEMETRY_OPT_OUT,
        )
        with _sdk_adjustments(sdk, session):
            pipeline = _call_target(target, function, {**offered, "sagemaker_session": session})
            if not isinstance(pipeline, sdk.Pipeline):
                raise DefinitionError(
                    f"{target} returned {type(pipeline).__name__}, not a "
                    "sagemaker.mlops.workflow.pipeline.Pipeline; return the Pipeline object"
                )
            if pipeline.sagemaker_session is not session:
                raise DefinitionError(
                    f"{target} built its Pipeline with another SageMaker session; pass the "
                    "sagemaker_session argument to Pipeline(...) and to every processor, "
                    "trainer and model builder"
                )
            try:
                return pipeline.definition()  # the uploads happen here: call it once
            except Exception as error:
                raise DefinitionError(
                    f"rendering the definition of {target} failed: {_one_line(error)}"
                ) from error


def _refused_error(target: str, refused: list[str]) -> DefinitionError:
    return DefinitionError(
        f"building {target} needed AWS calls, which an offline build cannot make: "
        f"{', '.join(sorted(set(refused)))}; pass explicit values (role ARN, bucket, S3 URIs) "
        f"instead, and check the SageMaker SDK is {PINNED_SDK_VERSION}"
    )


def parse_target(target: str) -> tuple[str, str, str]:
    """Split ``target`` into (``"path"`` or ``"module"``, location, function name)."""
    location, sep, function_name = target.rpartition(":")
    if not sep or not location or not _IDENTIFIER.match(function_name):
        raise DefinitionError(
            f"pipeline target {target!r} is not 'path/to/file.py:function' or "
            "'package.module:function'; fix the target"
        )
    if location.endswith(".py") or "/" in location or os.sep in location:
        return "path", location, function_name
    if _MODULE_PATH.match(location):
        return "module", location, function_name
    raise DefinitionError(
        f"pipeline target {target!r}: {location!r} is neither a .py file path nor a dotted "
        "module name; fix the target"
    )


def content_digest(files: Iterable[tuple[str, Path]]) -> str:
    """sha256 over (relative POSIX path, file bytes) of every file, in path order."""
    digest = hashlib.sha256()
    for relative, path in sorted(files):
        digest.update(relative.encode("utf-8") + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def code_files(path: Path) -> list[tuple[str, Path]]:
    """The files ``upload_data`` would send for ``path``: (relative POSIX path, path), sorted.

    A file is named by its base name; a directory contributes every file below it except
    ``__pycache__`` folders and compiled Python files.
    """
    if path.is_file():
        return [(path.name, path)]
    found = []
    for folder, dir_names, file_names in os.walk(path):
        dir_names[:] = sorted(name for name in dir_names if name not in _IGNORED_DIR_NAMES)
        for name in file_names:
            if not name.endswith(_IGNORED_SUFFIXES):
                full = Path(folder, name)
                found.append((full.relative_to(path).as_posix(), full))
    return sorted(found)


class _Stager:
    """Copies what the SDK would upload into the staging folder and remembers the S3 URIs."""

    def __init__(self, staging_dir: Path, bucket: str, prefix: str) -> None:
        self.staging_dir = staging_dir
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._uploads: dict[str, StagedUpload] = {}

    def stage_path(self, path: str | os.PathLike[str], bucket: str | None) -> str:
        """Stage a file or directory; return its content-addressed S3 URI."""
        source = Path(path)
        if not source.exists():
            raise FileNotFoundError(f"cannot stage {source}: no such file or directory")
        files = code_files(source)
        bucket = bucket or self.bucket
        key_prefix = f"{self.prefix}/code/{content_digest(files)}"
        for relative, file in files:
            self._stage(bucket, f"{key_prefix}/{relative}", file.read_bytes())
        if source.is_file():
            return f"s3://{bucket}/{key_prefix}/{source.name}"
        return f"s3://{bucket}/{key_prefix}"

    def stage_body(self, body: str | bytes, bucket: str, key: str) -> str:
        """Stage an in-memory object at the key the SDK chose (the SDK ignores any other URI)."""
        data = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        return self._stage(bucket, key, data)

    def _stage(self, bucket: str, key: str, data: bytes) -> str:
        target = (self.staging_dir / bucket / PurePosixPath(key)).resolve()
        if not target.is_relative_to(self.staging_dir.resolve() / bucket):
            raise ValueError(f"refusing to stage outside {self.staging_dir}: {key!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        uri = f"s3://{bucket}/{key}"
        self._uploads[uri] = StagedUpload(
            local_path=target, s3_uri=uri, sha256=hashlib.sha256(data).hexdigest()
        )
        return uri

    def uploads(self) -> tuple[StagedUpload, ...]:
        return tuple(self._uploads[uri] for uri in sorted(self._uploads))


class _OfflineAws:
    """A boto3 session that refuses (and records) every API call its clients attempt."""

    def __init__(self, region: str) -> None:
        import boto3
        import botocore.session

        core = botocore.session.Session()
        core.set_credentials(_OFFLINE_KEY, _OFFLINE_KEY)
        self.boto_session = boto3.Session(botocore_session=core, region_name=region)
        self.refused: list[str] = []
        # Registered before any client exists: clients copy the session's handlers when created.
        self.boto_session.events.register("before-call", self._refuse)

    def _refuse(self, model: Any = None, **_: Any) -> None:
        name = f"{model.service_model.signing_name}:{model.name}" if model else "unknown"
        self.refused.append(name)
        raise OfflineCallError(f"offline pipeline build: refused AWS call {name}")


class OfflineCallError(RuntimeError):
    """Raised inside the SDK when it tries to call AWS during an offline build."""


@contextlib.contextmanager
def _sdk_environment(region: str) -> Iterator[_OfflineAws]:
    """Environment and process state the SDK needs to import and build offline; restored after."""
    import boto3

    with tempfile.TemporaryDirectory(prefix="smbridge-sdk-") as config_dir:
        # SDK defaults for any session created behind our back: telemetry off, and none of the
        # developer's own defaults files (they would make the definition machine-dependent).
        config_file = Path(config_dir, "config.yaml")
        config_file.write_text(json.dumps(_TELEMETRY_OPT_OUT))
        overrides = {
            # Some SDK modules create boto3 clients at import time and need a region.
            "AWS_DEFAULT_REGION": region,
            "AWS_REGION": region,
            # Skip the IAM role checks (iam:SimulatePrincipalPolicy); the role is given as an ARN.
            "SAGEMAKER_VALIDATE_ROLE": "false",
            # A session created behind our back must not probe the instance metadata endpoint.
            "AWS_EC2_METADATA_DISABLED": "true",
            "SAGEMAKER_ADMIN_CONFIG_OVERRIDE": str(config_file),
            "SAGEMAKER_USER_CONFIG_OVERRIDE": str(config_file),
            # Nor the developer's AWS profiles: credentials are placeholders, the region is given.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }
        removed = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE")
        saved_env = {name: os.environ.get(name) for name in (*overrides, *removed)}
        saved_default_session = boto3.DEFAULT_SESSION
        os.environ.update(overrides)
        for name in removed:
            os.environ.pop(name, None)
        try:
            offline = _OfflineAws(region)
            # sagemaker.ai_registry creates clients on boto3's default session when imported.
            boto3.DEFAULT_SESSION = offline.boto_session
            with _root_logging_kept(), warnings.catch_warnings():
                # Noise for smbridge users: SDK-internal deprecations and a note that jobs are
                # not started under a PipelineSession.
                warnings.filterwarnings("ignore", category=DeprecationWarning, module="sagemaker")
                warnings.filterwarnings("ignore", message="Running within a PipelineSession")
                yield offline
        finally:
            boto3.DEFAULT_SESSION = saved_default_session
            for name, value in saved_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


class _Sdk:
    """The SDK objects this module uses, imported once the environment is ready."""

    def __init__(self) -> None:
        from sagemaker.core.config.config_manager import SageMakerConfig
        from sagemaker.core.workflow.pipeline_context import PipelineSession
        from sagemaker.mlops.workflow.pipeline import Pipeline
        from sagemaker.train.model_trainer import ModelTrainer

        self.SageMakerConfig = SageMakerConfig
        self.PipelineSession = PipelineSession
        self.Pipeline = Pipeline
        self.ModelTrainer = ModelTrainer


@contextlib.contextmanager
def _root_logging_kept() -> Iterator[None]:
    """Undo changes to the root logger: an SDK module calls ``logging.basicConfig()`` on import."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def _import_sdk() -> _Sdk:
    try:
        with _root_logging_kept():  # now, so that the SDK's own log lines go where the host's go
            return _Sdk()
    except ImportError as error:
        raise DefinitionError(
            f"building a pipeline definition needs the SageMaker SDK ({_one_line(error)}); "
            f"install it with: pip install 'smbridge[build]' (sagemaker=={PINNED_SDK_VERSION})"
        ) from error


_session_classes: dict[type, type] = {}


def _offline_session_class(sdk: _Sdk) -> type:
    """A ``PipelineSession`` whose bucket is fixed and whose uploads are staged locally."""
    base = sdk.PipelineSession
    if base in _session_classes:
        return _session_classes[base]

    class OfflinePipelineSession(base):  # type: ignore[misc, valid-type]
        def __init__(self, *, bucket: str, stager: _Stager, **kwargs: Any) -> None:
            self._offline_bucket = bucket
            self._stager = stager
            super().__init__(default_bucket=bucket, **kwargs)

        def default_bucket(self) -> str:
            # The stock method calls s3:ListBuckets / CreateBucket on first use.
            return self._offline_bucket

        def upload_data(
            self,
            path: str,
            bucket: str | None = None,
            key_prefix: str = "data",
            callback: Any = None,
            extra_args: Any = None,
        ) -> str:
            # key_prefix is ignored: it holds job names with timestamps.
            return self._stager.stage_path(path, bucket)

        def upload_string_as_file_body(
            self, body: str | bytes, bucket: str, key: str, kms_key: str | None = None
        ) -> str:
            return self._stager.stage_body(body, bucket, key)

    _session_classes[base] = OfflinePipelineSession
    return OfflinePipelineSession


@contextlib.contextmanager
def _sdk_adjustments(sdk: _Sdk, session: Any) -> Iterator[None]:
    """Patch the two SDK internals that cost time or call AWS; restored on exit.

    Each patch only changes behaviour for ``session``; if the SDK no longer has the attribute,
    nothing is patched (a slower build, or a refused call that fails it, but never a wrong one).
    """
    patches: list[tuple[Any, str, Any]] = []

    validate = sdk.SageMakerConfig.__dict__.get("validate_sagemaker_config")
    if isinstance(validate, staticmethod):
        original_validate = validate.__func__
        validated = session.sagemaker_config  # validated once when the session was created

        def validate_once(sagemaker_config: Any = None) -> None:
            if sagemaker_config is not validated:
                original_validate(sagemaker_config)

        patches.append(
            (sdk.SageMakerConfig, "validate_sagemaker_config", staticmethod(validate_once))
        )

    resolve = getattr(sdk.ModelTrainer, "_resolve_staging_bucket", None)
    if callable(resolve):

        def staging_bucket(trainer: Any) -> tuple[str, None]:
            if trainer.sagemaker_session is session:
                return session.default_bucket(), None
            return resolve(trainer)

        patches.append((sdk.ModelTrainer, "_resolve_staging_bucket", staging_bucket))

    saved = [(owner, name, owner.__dict__[name]) for owner, name, _ in patches]
    try:
        for owner, name, replacement in patches:
            setattr(owner, name, replacement)
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


@contextlib.contextmanager
def _target_import_path(kind: str, location: str) -> Iterator[None]:
    """Put a file target's folder first on ``sys.path`` (as ``python file.py`` would)."""
    if kind != "path":
        yield
        return
    folder = str(Path(location).resolve().parent)
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)


def _load_function(target: str, kind: str, location: str, function_name: str) -> Callable[..., Any]:
    module = (
        _load_file(target, Path(location)) if kind == "path" else _load_module(target, location)
    )
    function = getattr(module, function_name, None)
    if function is None:
        raise DefinitionError(
            f"{location} has no function {function_name!r} (target {target!r}); "
            "define it or fix the target"
        )
    if not callable(function):
        raise DefinitionError(f"{location}:{function_name} is not a function (target {target!r})")
    return function


def _check_file(target: str, path: Path) -> None:
    if not path.is_file():
        raise DefinitionError(
            f"pipeline file {path} (target {target!r}) does not exist (cwd: {Path.cwd()}); "
            "fix the path"
        )


def _load_file(target: str, path: Path) -> ModuleType:
    _check_file(target, path)
    # A fixed module name: it must not depend on where the checkout is.
    name = f"_smbridge_target_{re.sub(r'[^A-Za-z0-9_]', '_', path.stem)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise DefinitionError(f"cannot load {path} as Python (target {target!r}); use a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and the like look their module up while loading
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        sys.modules.pop(name, None)
        raise DefinitionError(f"importing {path} failed: {_one_line(error)}") from error
    return module


def _load_module(target: str, name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name and (name == error.name or name.startswith(f"{error.name}.")):
            raise DefinitionError(
                f"module {name!r} (target {target!r}) cannot be found on sys.path; "
                "fix the target or install the package"
            ) from error
        raise DefinitionError(f"importing {name} failed: {_one_line(error)}") from error
    except Exception as error:
        raise DefinitionError(f"importing {name} failed: {_one_line(error)}") from error


def _call_target(target: str, function: Callable[..., Any], offered: dict[str, Any]) -> Any:
    """Call ``function`` with the offered keywords its signature accepts."""
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError) as error:
        raise DefinitionError(f"cannot inspect the signature of {target}: {error}") from error
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    accepted = {name: value for name, value in offered.items() if takes_any or name in parameters}
    if "sagemaker_session" not in accepted:
        raise DefinitionError(
            f"{target} does not accept a sagemaker_session keyword; add "
            "'sagemaker_session=None' and build every step and the Pipeline with it, "
            "so the definition builds offline"
        )
    missing = [
        name
        for name, p in parameters.items()
        if p.default is inspect.Parameter.empty
        and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        and name not in accepted
    ]
    if missing:
        raise DefinitionError(
            f"{target} requires {', '.join(missing)}, which smbridge does not supply "
            f"(it offers {', '.join(OFFERED_KEYWORDS)}); give them defaults"
        )
    try:
        return function(**accepted)
    except DefinitionError:
        raise
    except Exception as error:
        raise DefinitionError(f"{target} raised {_one_line(error)}") from error


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


__all__ = [
    "OFFERED_KEYWORDS",
    "PINNED_SDK_DISTRIBUTIONS",
    "PINNED_SDK_VERSION",
    "OfflineCallError",
    "build_pipeline_definition",
    "canonical_json",
    "code_files",
    "content_digest",
    "parse_target",
]
