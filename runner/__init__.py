"""urltester's runner, in layers; arrows point one way (tests/test_layers.py checks them):

    runner.cli    the ``runner`` command (typer): the composition root
       │
    runner.jobs   the application: URL validation, the Runtime, the check task, imports
       │      ╲
    runner.check  runner.taskq   what a check is (requests) │ the task runner (kombu)
       │             │
    runner.errors, runner.text, runner.backoff, runner.version, runner.metrics, runner.fields:
    shared leaves that import nothing of ours

``db`` (the store) sits beside them: ``jobs`` and ``cli`` use it; ``check`` and ``taskq``
never do. ``db`` imports one leaf, ``runner.fields`` (a result's fields, declared once for
the check that fills them and the store that keeps them).
"""
