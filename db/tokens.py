"""API tokens: names, read-only flags and the sha256 digest of each token (never the token).

The caller hashes; this module stores and finds digests. A revoked token keeps its row
(who had access, and until when) and frees its name for a new token.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .errors import StoreError
from .store import Store, utcnow


class TokenNameTaken(StoreError):
    """An active token already has this name."""


@dataclass(frozen=True)
class Token:
    id: int
    name: str
    read_only: bool
    created_at: datetime
    revoked_at: datetime | None = None


_COLUMNS = "id, name, read_only, created_at, revoked_at"


def _token(store: Store, row: tuple[Any, ...]) -> Token:
    d = store.dialect
    return Token(row[0], row[1], bool(row[2]), d.parse_ts(row[3]), d.parse_ts(row[4]))


def create_token(store: Store, name: str, digest: str, *, read_only: bool = False,
                 now: datetime | None = None) -> Token:
    d = store.dialect
    flag = d.boolean(read_only)
    with d.transaction() as cur:
        cur.execute("SELECT 1 FROM tokens WHERE name = %s AND revoked_at IS NULL", (name,))
        if cur.fetchone():
            raise TokenNameTaken(f"a token named {name!r} exists; revoke it first or pick another name")
        cur.execute(
            f"INSERT INTO tokens (name, digest, read_only, created_at) VALUES (%s, %s, %s, %s) RETURNING {_COLUMNS}",
            (name, digest, flag, d.ts(now or utcnow())),
        )
        return _token(store, cur.fetchone())


def find_token(store: Store, digest: str) -> tuple[Token, str] | None:
    """The active token with this digest and its stored digest (to compare in constant time)."""
    with store.dialect.transaction() as cur:
        cur.execute(f"SELECT {_COLUMNS}, digest FROM tokens WHERE digest = %s AND revoked_at IS NULL", (digest,))
        row = cur.fetchone()
    return (_token(store, row[:5]), row[5]) if row else None


def list_tokens(store: Store, *, include_revoked: bool = False) -> list[Token]:
    where = "" if include_revoked else " WHERE revoked_at IS NULL"
    with store.dialect.transaction() as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM tokens{where} ORDER BY id")  # our own fragment
        return [_token(store, row) for row in cur.fetchall()]


def revoke_token(store: Store, name: str, *, now: datetime | None = None) -> bool:
    """Revoke the active token with this name; False when there is none."""
    d = store.dialect
    with d.transaction() as cur:
        cur.execute("UPDATE tokens SET revoked_at = %s WHERE name = %s AND revoked_at IS NULL",
                    (d.ts(now or utcnow()), name))
        return bool(cur.rowcount > 0)
