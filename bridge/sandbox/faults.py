"""Seeded, probability-driven fault plans for the sandbox, reproducible from their seed.

* :class:`FaultPlan`: a ``fault_policy`` for the Azure DevOps stand-in
  (:class:`~bridge.sandbox.azure_devops.AzureDevOpsStandIn`): per request a 429 with
  ``Retry-After``, a 503, a connection reset after the run was created or a time-out, at the
  given rates; and an outage on demand (every request answered 503).
* :class:`AbortPlan`: which invocations of a function die, at which of their external calls,
  before or after it took effect, and how (the runtime killed, or the call failing).
* :class:`Invocation`, :func:`install_boto3_steps`, :class:`StepSession`: the injection points.
  An invocation made current in a thread (:func:`invocation`) counts that thread's calls through
  a boto3 session (botocore's ``before-call``/``after-call`` events) and a ``requests`` session,
  and raises its planned abort at its step.

Every draw comes from ``random.Random(f"{seed}/{what}/{key}/{n}")``: the n-th request with the
same method, URL and body gets the same fault in every run, and an invocation keyed by its
message and receive count the same abort, whatever the threads' interleaving. So a failure
reproduces from its seed.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from botocore.exceptions import EndpointConnectionError

from bridge.sandbox.azure_devops import Fault, StandInRequest

RUNS = "Runs_Run Pipeline"
BUILDS = "Builds_List"


def keyed_random(seed: int | str, *parts: object) -> random.Random:
    """A generator determined by ``seed`` and ``parts`` alone (string seeds are hashed with
    SHA-512 by :class:`random.Random`, not with the per-process ``hash``)."""
    return random.Random("/".join(str(p) for p in (seed, *parts)))


def request_key(request: StandInRequest) -> str:
    """What identifies a request across retries: method, path, query and body."""
    parts = urlsplit(request.url)
    body = request.body.encode() if isinstance(request.body, str) else (request.body or b"")
    digest = hashlib.sha256(f"{request.method} {parts.path}?{parts.query}\n".encode() + body)
    return digest.hexdigest()[:24]


@dataclass(frozen=True)
class FaultRates:
    """Per request of an operation the plan covers; what is left answers normally."""

    throttled: float = 0.20  # 429 with Retry-After (and X-RateLimit-*)
    unavailable: float = 0.10  # 503
    reset: float = 0.05  # connection reset; a POST …/runs has created its run first
    timeout: float = 0.02  # no answer; half of the POSTs have created their run
    retry_after: tuple[int, int] = (1, 30)  # seconds, drawn uniformly (both ends included)

    def __post_init__(self) -> None:
        total = self.throttled + self.unavailable + self.reset + self.timeout
        if not 0 <= total <= 1:
            raise ValueError(f"fault rates add up to {total}, not a probability")


class FaultPlan:
    """A fault policy: call it with (operation, request); a :class:`Fault` or ``None``.

    ``outage_trigger``: when it returns true for a request (it is called once per request until
    then, in the requesting thread), an outage begins with that request; :meth:`end_outage`
    ends it. During an outage every request of the covered operations within ``outage_scope``
    (all of them by default; e.g. one organization's) gets a 503.
    ``served`` counts what was answered, by (operation, kind).
    """

    def __init__(
        self,
        seed: int | str,
        rates: FaultRates = FaultRates(),
        operations: frozenset[str] = frozenset({RUNS, BUILDS}),
    ) -> None:
        self.seed = seed
        self.rates = rates
        self.operations = operations
        self.enabled = True  # False: only the outage (if any) is injected
        self.outage = False
        self.outage_trigger: Callable[[str, StandInRequest], bool] | None = None
        self.outage_scope: Callable[[StandInRequest], bool] = lambda request: True
        self.served: Counter[tuple[str, str]] = Counter()
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()

    def end_outage(self) -> None:
        with self._lock:
            self.outage = False

    def __call__(self, operation: str, request: StandInRequest) -> Fault | None:
        if operation not in self.operations:
            return None
        with self._lock:
            trigger, scoped = self.outage_trigger, self.outage_scope(request)
            if not self.outage and scoped and trigger is not None and trigger(operation, request):
                self.outage_trigger = None
                self.outage = True
            if self.outage and scoped:
                self.served[(operation, "outage 503")] += 1
                return Fault("status", 503)
            if not self.enabled:
                self.served[(operation, "answered")] += 1
                return None
            key = request_key(request)
            attempt = self._seen[key]
            self._seen[key] += 1
            fault, kind = self.draw(operation, key, attempt)
            self.served[(operation, kind)] += 1
            return fault

    def draw(self, operation: str, key: str, attempt: int) -> tuple[Fault | None, str]:
        """The fault of the ``attempt``-th request (from 0) identified by ``key``."""
        rng = keyed_random(self.seed, operation, key, attempt)
        rates, r = self.rates, rng.random()
        creates = operation == RUNS
        if r < rates.throttled:
            seconds = rng.randint(*rates.retry_after)
            return Fault.throttled(seconds), "429"
        r -= rates.throttled
        if r < rates.unavailable:
            return Fault("status", 503), "503"
        r -= rates.unavailable
        if r < rates.reset:
            kind = "reset after the run was created" if creates else "reset"
            return Fault("connection", processed=creates), kind
        r -= rates.reset
        if r < rates.timeout:
            processed = creates and rng.random() < 0.5
            kind = "timeout after the run was created" if processed else "timeout"
            return Fault("timeout", processed=processed), kind
        return None, "answered"


@dataclass(frozen=True)
class Abort:
    """Where an invocation dies: at its ``step``-th external call (from 1), ``after`` it took
    effect (its answer lost) or before it was sent; ``kill``: the runtime dies
    (:class:`RuntimeKilled`, which no ``except Exception`` sees) rather than the call failing
    (a transport error, which the code may handle)."""

    step: int
    after: bool
    kill: bool

    def describe(self, call: str) -> str:
        how = "killed" if self.kill else "transport error"
        return f"{how} {'after' if self.after else 'before'} call {self.step} ({call})"


class AbortPlan:
    """``rate`` of the invocations abort, at a step drawn from 1..``max_step`` (an invocation
    that makes fewer calls is not aborted), half of them after the call, half killed."""

    def __init__(self, seed: int | str, rate: float = 0.05, max_step: int = 12) -> None:
        self.seed, self.rate, self.max_step = seed, rate, max_step

    def draw(self, key: str) -> Abort | None:
        rng = keyed_random(self.seed, "abort", key)
        if rng.random() >= self.rate:
            return None
        return Abort(rng.randint(1, self.max_step), rng.random() < 0.5, rng.random() < 0.5)


class RuntimeKilled(BaseException):
    """The function's runtime died (a time-out, out of memory, a lost container): raised as a
    ``BaseException`` so that no ``except Exception`` of the code under test cleans up, as
    nothing would in a killed process."""


@dataclass
class Invocation:
    """One invocation's external calls, counted; raises its planned abort at its step.
    ``key`` names it in reports; ``aborted`` says how it died, if it did."""

    key: str
    abort: Abort | None = None
    calls: int = 0
    aborted: str | None = None

    def step(self, call: str, *, after: bool, error: Callable[[], Exception]) -> None:
        if not after:
            self.calls += 1
        abort = self.abort
        if abort is None or self.aborted or abort.step != self.calls or abort.after != after:
            return
        self.aborted = abort.describe(call)
        if abort.kill:
            raise RuntimeKilled(self.aborted)
        raise error()


_current = threading.local()


def current() -> Invocation | None:
    """The invocation running in this thread, if any."""
    return getattr(_current, "invocation", None)


@contextmanager
def invocation(inv: Invocation) -> Iterator[Invocation]:
    """Make ``inv`` this thread's current invocation for the block."""
    previous = current()
    _current.invocation = inv
    try:
        yield inv
    finally:
        _current.invocation = previous


def install_boto3_steps(session: Any) -> None:
    """Count every call of the clients ``session`` (a boto3 or botocore session) creates from now
    on as a step of the current invocation; an abort there raises botocore's
    ``EndpointConnectionError`` (or kills)."""

    def error() -> Exception:
        return EndpointConnectionError(endpoint_url="https://injected.invalid/")

    def before(event_name: str, **kwargs: Any) -> None:
        inv = current()
        if inv is not None:
            inv.step(event_name.split(".", 1)[1], after=False, error=error)

    def after(event_name: str, **kwargs: Any) -> None:
        inv = current()
        if inv is not None:
            inv.step(event_name.split(".", 1)[1], after=True, error=error)

    events = session.events
    events.register("before-call", before)
    events.register("after-call", after)


class StepSession(requests.Session):
    """A ``requests`` session whose every request is a step of the current invocation (an abort
    raises ``requests.ConnectionError``, before the request or after its answer came back).
    ``before``/``after``: observers of each request and each answer (in the calling thread)."""

    def __init__(
        self,
        before: Callable[[str, str], None] | None = None,
        after: Callable[[requests.Response], None] | None = None,
    ) -> None:
        super().__init__()
        self._before, self._after = before, after

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        name = f"{method!s} {urlsplit(str(url)).path}"
        inv = current()
        if inv is not None:
            inv.step(name, after=False, error=lambda: requests.ConnectionError("injected reset"))
        if self._before is not None:
            self._before(str(method), str(url))
        response = super().request(method, url, *args, **kwargs)
        if inv is not None:  # an abort here loses the answer: the observer never sees it
            inv.step(name, after=True, error=lambda: requests.ConnectionError("injected reset"))
        if self._after is not None:
            self._after(response)
        return response
