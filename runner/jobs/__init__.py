"""The application: jobs in, checks run, results stored.

Owns: validating and normalising URLs, the settings, the :class:`~runner.jobs.runtime.Runtime`
and its :class:`~runner.jobs.intake.Intake` (the one way jobs enter: record, then publish),
the check task and the result writer, the worker's service for the pool, alerts' delivery through Apprise (``alerts``),
imports and their readers (``documents``: sitemaps, HTML
and Markdown, and SOURCEs fetched by URL), and reports of results.

Ties ``runner.check``, ``runner.discover`` and ``runner.taskq`` to ``db``. May import:
``runner.check``, ``runner.discover``, ``runner.taskq``, ``db`` and the shared leaves; never
``runner.cli`` or ``tui``.
"""
