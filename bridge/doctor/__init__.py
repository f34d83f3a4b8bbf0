"""``smbridge doctor``: the set-up checks, read-only, each saying ``ok`` or what to fix.

* :mod:`bridge.doctor.placeholders`: the rule for values left from the example configuration.
* :mod:`bridge.doctor.lookups`: the few reads the checks need that no capability offers yet
  (Pipelines - Get, Service Endpoints - Get, a pipeline YAML's declared parameters, an OIDC
  token's claims).
* :mod:`bridge.doctor.checks`: one small function per check, each returning a
  :class:`~bridge.doctor.checks.CheckResult`.
* :mod:`bridge.doctor.operations`: ``DoctorParams``, ``plan`` (the calls, none made) and ``run``.

Its own layer, between the CLI and the capabilities (pyproject's import-linter contracts): it
reads through ``bridge.ado.setup``'s and ``bridge.trigger.routing``'s models, which the
capabilities may not do between each other.
"""
