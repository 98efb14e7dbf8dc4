"""Many rows in one parameter, for PostgreSQL: a JSON array of arrays, read back with
``json_array_elements`` and a cast per column.

Why: psycopg2 adapts each value of a multi-row ``VALUES`` in Python (``execute_values``
mogrifies row by row: about 7 µs for a row of 8 values, 2 µs of it per timestamp), and
PostgreSQL parses every literal of the statement. The JSON encoder is C: about 1.5 µs a
row here, and the server's CPU per row drops by about as much (measured for the write path
of a result, which writes 3 to 5 such rows per check: docs/performance.md). The statement's
text no longer depends on the rows.

Exact round trip: integers and text as they are, floats by ``repr`` (read back exactly by
``float8``), timestamps as ISO 8601 with their offset, JSON values (a ``jsonb`` column) as
nested JSON. A value JSON cannot carry exactly (NaN, an infinity) makes :func:`encode`
answer None, and the caller sends the rows the old way.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Sequence
from datetime import datetime
from typing import Any

_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"),
                            default=lambda value: _plain(value))


# A batch names each check's time 3 to 5 times: each formatted once. Equal aware times are
# one instant whatever their offsets, so one text serves them all (timestamptz columns only).
_ISO: dict[datetime, str] = {}


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        text = _ISO.get(value)
        if text is None:
            if len(_ISO) > 4096:
                _ISO.clear()
            text = _ISO[value] = value.isoformat()
        return text
    adapted = getattr(value, "adapted", None)  # psycopg2's Json(...) wrapper: the value it wraps
    if adapted is not None:
        return adapted
    raise TypeError(f"not a JSON row value: {type(value).__name__}")


def encode(rows: Sequence[Sequence[Any]]) -> str | None:
    """The rows as one JSON text, or None when a value would not come back exactly."""
    try:
        return _ENCODER.encode(rows)
    except ValueError:  # NaN or an infinity
        return None


def select(types: Sequence[str]) -> str:
    """``SELECT`` of the encoded rows' columns, each cast to its PostgreSQL type (``jsonb``
    columns from the nested JSON, the others from its text), ``%s`` the JSON text."""
    columns = ", ".join(f"(e -> {i})::jsonb" if kind == "jsonb" else f"(e ->> {i})::{kind}"
                        for i, kind in enumerate(types))
    return f"SELECT {columns} FROM json_array_elements(%s::json) AS e"


def execute(cur: Any, head: str, types: Sequence[str], rows: Sequence[Sequence[Any]], tail: str) -> bool:
    """``head``, the rows' ``SELECT`` (:func:`select`), ``tail``, in ``cur``; False (nothing
    executed) when a value would not come back exactly: the caller sends the rows as before."""
    text = encode(rows)
    if text is None:
        return False
    sql = head + select(types) + tail
    conn = cur.connection
    with _LOCK:
        known = _PREPARED.setdefault(conn, {})
    name = known.get(sql)
    if name is None:  # once per connection: later batches skip the parse and the plan
        name = f"urltester_rows_{len(known)}"
        cur.execute(f"PREPARE {name} (json) AS {sql.replace('%s::json', '$1')}")
        known[sql] = name
    cur.execute(f"EXECUTE {name} (%s)", (text,))
    return True


# Each connection's prepared statements (PREPARE outlives a rolled-back transaction; a
# connection closed takes them with it, and leaves this map with its last reference).
_PREPARED: weakref.WeakKeyDictionary[Any, dict[str, str]] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()
