"""The sandbox: the whole loop on one machine (``smbridge demo``), against stand-ins.

What it is: local stand-ins for the services the bridge talks to, strict enough that the real
CLI, SDK and trigger code can run against them unchanged. For Azure DevOps,
:mod:`bridge.sandbox.azure_devops` keeps the state (runs, builds, environments, check
configurations, approvals, pipeline permissions, injected faults) and answers each request the
way the service does where the project's tests pin it down; :mod:`bridge.sandbox.ado_server`
serves it over HTTP on 127.0.0.1, and the tests drive the same object through ``responses``
(``tests/support/fake_ado.py``). Every request is held against the official OpenAPI specs in the
repository's ``reference/`` folder (:mod:`bridge.sandbox.ado_contract`); a request they do not
allow is refused loudly and recorded.

What it is not: the stand-in is not Azure DevOps. It implements only the operations the bridge
uses, it runs no pipeline (a run stays ``inProgress`` until the sandbox's user moves it on), it
knows no permissions beyond "this credential is accepted" and "this identity is an approver",
and its answers are the service's documented and recorded shapes, not the service's behaviour in
every corner. Passing against it shows the bridge speaks the contract; it does not replace a
run against a real organization.

It needs a clone of the repository (the specs in ``reference/`` and the pipeline YAML in
``azure-pipelines/`` are read from it); an installed wheel alone does not carry them.
"""
