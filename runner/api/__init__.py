"""The HTTP API and the page (``runner serve``): a composition root, like :mod:`runner.cli`.

Owns FastAPI, Starlette, uvicorn and the API's Prometheus metrics. Thin path functions over
the same :class:`runner.jobs.runtime.Runtime` the CLI uses (``submit``, the store's
listings), run off the event loop because the store is synchronous. Imports jobs, check
and db; nothing imports it but the CLI's ``serve`` command.

Modules: ``config`` (limits and CORS from the environment), ``app`` (the ASGI app, errors,
middleware), ``auth`` (bearer tokens), ``schemas`` (bodies and answers, the OpenAPI
contract), ``routes`` (jobs, batches, the old ``add_job``/``get_jobs``, health),
``events`` (Server-Sent Events), ``metrics`` and ``static/`` (the page).
"""
