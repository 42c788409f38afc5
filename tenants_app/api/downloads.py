"""CSV answers (usage lines, invoices): a download named for what it holds, streamed
when the content is an iterator so a large range never sits in memory."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse, StreamingHttpResponse


def csv_response(content: Any, filename: str) -> HttpResponse | StreamingHttpResponse:
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if isinstance(content, str | bytes):
        return HttpResponse(content, content_type="text/csv; charset=utf-8", headers=headers)
    return StreamingHttpResponse(content, content_type="text/csv; charset=utf-8", headers=headers)
