"""The tests' PDF reader must not be fooled by the bytes inside a stream.

A compressed stream is arbitrary bytes; now and then they spell ``endobj``
or ``endstream``. The reader slices streams by ``/Length``, so such a stream
is read whole. The streams here are deflated at level 0 (stored), which
keeps those words in the bytes on purpose.
"""

from __future__ import annotations

import zlib

from .pdftext import pdf_text


def _stream_object(number: int, content: bytes, extra: bytes = b"") -> bytes:
    data = zlib.compress(content, 0)
    head = b"<</Filter /FlateDecode/Length %d%s>>" % (len(data), extra)
    return b"%d 0 obj\n%s\nstream\n%s\nendstream\nendobj\n" % (number, head, data)


def _pdf(page_content: bytes) -> bytes:
    cmap = b"beginbfchar\n<0001> <0048>\n<0002> <0069>\nendbfchar\n"
    return b"".join(
        [
            b"%PDF-1.7\n",
            _stream_object(1, cmap),
            b"2 0 obj\n<</Type /Font/ToUnicode 1 0 R>>\nendobj\n",
            b"3 0 obj\n<</Font <</F1 2 0 R>>>>\nendobj\n",
            _stream_object(4, page_content),
            b"%%EOF\n",
        ]
    )


def test_the_reader_finds_the_text_of_a_simple_page() -> None:
    assert pdf_text(_pdf(b"BT /F1 9 Tf <00010002> Tj ET")) == "Hi"


def test_a_stream_whose_bytes_spell_endobj_and_endstream_is_read_whole() -> None:
    content = b"BT /F1 9 Tf <0001> Tj ET\n% endobj\nendstream\nendobj\nBT /F1 9 Tf <0002> Tj ET"

    assert pdf_text(_pdf(content)).split() == ["H", "i"]
