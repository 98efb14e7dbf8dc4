"""The result's fields, declared once: what a check found, under one name everywhere.

A leaf (it imports nothing of ours) because the layers that may not import one another
all need them: the check fills them (:class:`runner.check.checker.CheckResult` is a
:class:`ResultFields`), the store keeps them in columns of the same names (``db.ResultRecord``
and ``db.JobView`` are ``ResultFields``; db/results.py and db/listing.py build their
column lists from :data:`RESULT_KEYS`), and the reports and the API show them under the
same names (the JSON keys of ``runner results --format json``, its CSV columns and the
API's ``Job`` schema, in runner/jobs/report.py and runner/api/schemas.py). A new field
is one line here and its column in a migration (``results`` and ``region_results``).

Each field's ``metadata`` says how it is shown: ``shown`` ``"ms"`` (rounded to 0.1) or
``"url"`` (password masked); ``per_region`` fields are shown for each region of a job that
named regions.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field


@dataclass(kw_only=True)
class ResultFields:
    """A result's fields, each None where there is no result yet (a job not checked).

    Classes that always have a result (the check's, a stored one) narrow ``outcome``,
    ``ok`` and ``attempts`` (NOT NULL columns) to their types without None.
    """

    outcome: str | None = field(default=None, metadata={"per_region": True})
    ok: bool | None = None
    status_code: int | None = field(default=None, metadata={"per_region": True})
    total_ms: float | None = field(default=None, metadata={"shown": "ms", "per_region": True})  # the final attempt
    attempts: int | None = None
    error: str | None = field(default=None, metadata={"per_region": True})
    final_url: str | None = field(default=None, metadata={"shown": "url"})  # password masked
    bytes: int | None = None  # body bytes read, after decompression, capped
    content_type: str | None = None
    title: str | None = None


RESULT_FIELDS: tuple[dataclasses.Field[typing.Any], ...] = dataclasses.fields(ResultFields)
RESULT_KEYS: tuple[str, ...] = tuple(f.name for f in RESULT_FIELDS)  # attribute, JSON key, CSV column, SQL column
RESULT_TYPES: dict[str, typing.Any] = typing.get_type_hints(ResultFields)  # each Optional
