"""Unique, cheap identifiers for responses, tool calls and request ids.

A random per-process prefix plus a counter: unique across restarts, no
per-request randomness.
"""

import itertools
import secrets
import time

_PREFIX = secrets.token_hex(4)
_counter = itertools.count(1)


def new_id(prefix: str) -> str:
    return f"{prefix}{_PREFIX}{next(_counter):08x}"


def now() -> int:
    return int(time.time())
