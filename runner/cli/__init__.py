"""The ``runner`` command line (typer), by command group: the composition root.

Owns: parsing flags and environment variables, building :class:`~runner.jobs.settings.Settings`
once and the :class:`~runner.jobs.runtime.Runtime` from them, and turning a known error into
one line and an exit code. The only package of ``runner`` that may import ``tui``.

May import: ``runner.jobs``, ``runner.check``, ``runner.taskq``, ``db``, ``tui`` and the
shared leaves (``runner.errors``, ``runner.text``, ``runner.backoff``).
"""
