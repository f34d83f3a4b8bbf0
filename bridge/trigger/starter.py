"""Start one Azure DevOps run for one approval, through faults, without a second run.

* 429: wait as ``Retry-After`` (or ``X-RateLimit-Reset``) says, then post again (not processed).
* 5xx, time-outs, broken connections: the run may exist; wait with full jitter, look for it
  (``Builds - List`` returns template parameters), and post again only if it is not there.
* 400/401/403/404: no retry; the error names the route and the status.
Every wait must fit in the Lambda's remaining time; otherwise the error is raised so that
the message returns to the trigger's queue and is retried (infra/trigger.yaml).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from bridge.azure_devops.client import AzureDevOpsClient, AzureDevOpsError, PipelineRun
from bridge.trigger.routing import Route

# How far before the approval a run for it may have been queued (clock skew between AWS and
# Azure DevOps).
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class RunRequest:
    """The run one approval needs; ``template_parameters`` carry its ARN and ``sourceEventId``
    (the approval's anchor event), which identify the run when it has to be looked for."""

    route: Route
    template_parameters: dict[str, str]
    approved_at: datetime


@dataclass
class RunOutcome:
    run_id: int
    web_url: str
    created: bool


@dataclass(frozen=True)
class RetryBudget:
    """Bounded retries inside the time the Lambda has left."""

    max_attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 20.0
    safety_margin: float = 3.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


IDENTIFYING_PARAMETERS = ("modelPackageArn", "sourceEventId")


def find_existing_run(client: AzureDevOpsClient, request: RunRequest) -> PipelineRun | None:
    """The newest run of the route's pipeline started for this approval: same model package
    ARN and same ``sourceEventId``, queued after the approval (less clock skew)."""
    wanted = {name: request.template_parameters[name] for name in IDENTIFYING_PARAMETERS}
    for build in client.iter_builds(
        request.route.project, request.route.pipeline_id, min_time=request.approved_at - CLOCK_SKEW
    ):
        if all(build.template_parameters.get(k) == v for k, v in wanted.items()):
            return build
    return None


def start_run_once(
    client: AzureDevOpsClient,
    request: RunRequest,
    *,
    previous_attempt: bool,
    remaining_seconds: Callable[[], float],
    sleep: Callable[[float], None],
    budget: RetryBudget = RetryBudget(),
    rng: random.Random | None = None,
    on_retry: Callable[[str, float], None] = lambda reason, delay: None,
) -> RunOutcome:
    rng = rng or random.Random()
    check_first = previous_attempt
    for attempt in range(1, budget.max_attempts + 1):
        try:
            if check_first:
                existing = find_existing_run(client, request)
                if existing is not None:
                    return RunOutcome(existing.id, existing.web_url, created=False)
            run = client.run_pipeline(
                request.route.project,
                request.route.pipeline_id,
                template_parameters=request.template_parameters,
                ref_name=request.route.ref_name,
            )
            return RunOutcome(run.id, run.web_url, created=True)
        except AzureDevOpsError as exc:
            if not exc.retryable or attempt == budget.max_attempts:
                raise
            delay = exc.retry_after if exc.retry_after is not None else budget.backoff(attempt, rng)
            if delay > remaining_seconds() - budget.safety_margin:
                raise AzureDevOpsError(
                    f"{exc} (no time left in this invocation to wait {delay:.1f}s and retry; "
                    "the queue will deliver the event again)",
                    status=exc.status,
                    retryable=True,
                    maybe_processed=exc.maybe_processed,
                ) from None
            check_first = check_first or exc.maybe_processed
            on_retry(str(exc), delay)
            sleep(delay)
    raise AssertionError("unreachable")
