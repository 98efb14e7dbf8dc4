"""The outcomes a check can have: the vocabulary of a result's class.

A module of its own so that what only needs the names (the CLI's choices and
completion, reports, the API's schema) does not import requests with the checker.
"""

from __future__ import annotations

OUTCOMES = (
    "ok", "http_error", "assertion_failed", "dns_error", "connect_refused",
    "connect_timeout", "read_timeout", "deadline_exceeded", "tls_error",
    "too_many_redirects", "too_large", "invalid_response", "blocked",
)
