"""What a check is: its options, the checker, its result and outcome, the transport, the address policy.

Modules: ``checker`` (the Checker: requests, redirects, the body, retries), ``result``
(:class:`CheckResult`, made from the final attempt, and the conditions' answers),
``classify`` (a failed request's outcome and words), ``outcomes`` (their names),
``transport`` (the urllib3 classes under requests, the resolver, the deadline watchdog),
``body`` (body assertions on the streaming body), ``options`` (per-job options and
conditions), ``policy`` (addresses),
``fetch`` (a document to read, an import's SOURCE URL, through the same transport and policy).

Owns: testing one URL over HTTP within a deadline (requests, on a transport of ours under
it that times each phase and enforces the address policy at the real connect address),
classifying what happened into an outcome, and the per-job options and conditions.

The only code of urltester that imports requests or urllib3. Importable on its own:
``import runner.check`` pulls in neither kombu, psycopg2 nor typer. May import: the shared
leaves (``runner.errors``, ``runner.text``, ``runner.backoff``, ``runner.fields``), tenacity; never
``runner.taskq``, ``runner.jobs``, ``runner.cli``, ``db`` or ``tui``.
"""
