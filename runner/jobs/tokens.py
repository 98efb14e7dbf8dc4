"""API tokens: made once, shown once, kept only as a sha256 digest.

A token is ``ut_`` and 32 random bytes in URL-safe base64 (``secrets.token_urlsafe``):
far too long to guess, so one unsalted sha256 is enough to keep it unreadable at rest.
The digest is looked up by index and then compared again with ``hmac.compare_digest``,
so no comparison of ours leaks through its timing how much of a guess was right.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from db import Store
from db.tokens import Token, create_token, find_token, list_tokens, revoke_token
from runner.errors import InvalidInput

PREFIX = "ut_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def create(store: Store, name: str, *, read_only: bool = False) -> tuple[Token, str]:
    """A new token named ``name``: its record and the token itself (shown once, never stored)."""
    if not _NAME.match(name):
        raise InvalidInput("1-64 letters, digits or _ . @ -, starting with a letter or digit",
                           where=f"token name {name!r}")
    token = PREFIX + secrets.token_urlsafe(32)
    return create_token(store, name, digest(token), read_only=read_only), token


def verify(store: Store, token: str) -> Token | None:
    """The active token this is, or None (unknown, revoked or malformed: the caller can't tell)."""
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    wanted = digest(token)
    found = find_token(store, wanted)
    if found is None or not hmac.compare_digest(found[1], wanted):
        return None
    return found[0]


__all__ = ["Token", "create", "digest", "list_tokens", "revoke_token", "verify"]
