"""The last requests received, so tests can assert what a client actually sent.

A bounded deque of references to the (immutable) request headers and parsed
body; masking is done when the log is read, not on the hot path.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from multidict import CIMultiDictProxy, MultiMapping

from providers_app.simulator.credentials import SECRET_QUERY_PARAMS, mask, mask_header

MAX_ENTRIES = 100


@dataclass(frozen=True, slots=True)
class _Entry:
    method: str
    path: str
    query: MultiMapping[str]
    headers: CIMultiDictProxy[str]
    body: object


class RequestLog:
    def __init__(self, maxlen: int = MAX_ENTRIES) -> None:
        self._entries: deque[_Entry] = deque(maxlen=maxlen)

    def record(
        self,
        method: str,
        path: str,
        query: MultiMapping[str],
        headers: CIMultiDictProxy[str],
        body: object,
    ) -> None:
        self._entries.append(_Entry(method, path, query, headers, body))

    def clear(self) -> None:
        self._entries.clear()

    def snapshot(self) -> list[dict]:
        """Oldest first; every credential masked to its last 4 characters."""
        return [_render(e) for e in list(self._entries)]


def _render(entry: _Entry) -> dict:
    return {
        "method": entry.method,
        "path": entry.path,
        "query": {
            k: (mask(v) if k.lower() in SECRET_QUERY_PARAMS else v) for k, v in entry.query.items()
        },
        "headers": {k.lower(): mask_header(k, v) for k, v in entry.headers.items()},
        "body": entry.body,
    }
