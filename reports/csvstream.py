"""CSV that streams and cannot run as a formula.

:func:`csv_response` writes rows as they are read (``StreamingHttpResponse``
over a generator), so a firm with 100,000 connections never has them all in
memory: querysets are read with ``.iterator(chunk_size=...)`` by the callers.
``make bench`` (phase ``exports``) measures the peak at 1,000 and 100,000 rows.

Formula injection: a spreadsheet runs a cell that starts with ``=``, ``+``,
``-`` or ``@`` (and, in some, a tab or carriage return) as a formula; such a
text cell gets a leading apostrophe, which spreadsheets show as text. Numbers
are written as numbers and left alone.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from django.http import StreamingHttpResponse
from django.utils import timezone

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any, tz: dt.tzinfo | None = None) -> Any:
    """A cell as written: datetimes in ISO 8601 (local time), None empty, formula-looking text defused."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return value
    if isinstance(value, dt.datetime):
        return value.astimezone(tz or timezone.get_current_timezone()).isoformat(timespec="seconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    text = str(value)
    if text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


class _Line:
    """A file-like that hands back what the csv writer writes, so each row becomes one chunk."""

    def write(self, value: str) -> str:
        return value


def csv_lines(header: Sequence[str], rows: Iterable[Sequence[Any]], *, tz: dt.tzinfo | None = None) -> Iterator[str]:
    writer = csv.writer(_Line())
    tz = tz or timezone.get_current_timezone()  # once, not per cell: it was a third of an export's time
    yield "\ufeff" + writer.writerow([neutralise(h) for h in header])  # BOM: spreadsheets read UTF-8
    for row in rows:
        yield writer.writerow([neutralise(cell, tz) for cell in row])


def csv_response(*, filename: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> StreamingHttpResponse:
    # The zone of the request (the reader's own), taken now: the rows are written after the view has
    # returned, when the middleware has put the server's zone back.
    lines = csv_lines(header, rows, tz=timezone.get_current_timezone())
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    # Client data: never kept by a browser or a proxy.
    response["Cache-Control"] = "no-store"
    return response
