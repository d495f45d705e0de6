"""Text out of a PDF that WeasyPrint wrote, with nothing but the standard library.

WeasyPrint writes text as glyph ids in hex strings (``<0012003a> Tj`` or
inside ``TJ`` arrays), one font per subset, each with a ``/ToUnicode`` CMap
mapping ids to characters. This follows exactly that: inflate every stream,
read each font's CMap, then walk each page's content stream, tracking which
font is selected (``/f-0-0 9 Tf``) and decoding the strings it shows. It is
enough for these tests to read what a person would read; it is not a
general PDF parser.
"""

from __future__ import annotations

import re
import zlib

OBJECT_START = re.compile(rb"(\d+) 0 obj")
STREAM_START = re.compile(rb">>\s*stream\r?\n")
DIRECT_LENGTH = re.compile(rb"/Length (\d+)\b(?!\s+\d+\s+R)")
STREAM_END = re.compile(rb"\r?\nendstream")
BFCHAR = re.compile(rb"beginbfchar(.*?)endbfchar", re.S)
BFRANGE = re.compile(rb"beginbfrange(.*?)endbfrange", re.S)
HEX = re.compile(rb"<([0-9A-Fa-f]*)>")
TOKEN = re.compile(rb"/([^\s/<>\[\]()]+)\s+[\d.]+\s+Tf|<([0-9A-Fa-f]*)>|(T\*|Td|TD|Tm|ET|')")


def _objects(pdf: bytes) -> dict[int, tuple[bytes, bytes]]:
    """Every object's dictionary and (inflated) stream, by object number.

    A stream is sliced by its ``/Length``, never by searching for the
    keywords after it: compressed bytes can spell ``endobj`` or
    ``endstream`` by chance, and a search would cut the stream there.
    """
    found: dict[int, tuple[bytes, bytes]] = {}
    position = 0
    while start := OBJECT_START.search(pdf, position):
        body_start = start.end()
        object_end = pdf.find(b"endobj", body_start)
        if object_end == -1:
            break
        stream = STREAM_START.search(pdf, body_start)
        data = b""
        if stream and stream.start() < object_end:
            head = pdf[body_start : stream.start() + 2]
            length = DIRECT_LENGTH.search(head)
            if length:
                data_end = stream.end() + int(length.group(1))
            else:  # an indirect /Length: the keyword is the only way to find the end
                data_end = STREAM_END.search(pdf, stream.end()).start()  # type: ignore[union-attr]
            data = pdf[stream.end() : data_end]
            if b"/FlateDecode" in head:
                data = zlib.decompress(data)
            object_end = pdf.find(b"endobj", data_end)
        else:
            head = pdf[body_start:object_end]
        position = object_end + len(b"endobj")
        number = start.group(1)
        found[int(number)] = (head, data)
        if b"/ObjStm" in head:
            # An object stream: "number offset" pairs, then the objects from /First on.
            first = int(re.search(rb"/First (\d+)", head).group(1))  # type: ignore[union-attr]
            pairs = [int(v) for v in data[:first].split()]
            numbers, offsets = pairs[::2], pairs[1::2]
            for i, inner in enumerate(numbers):
                end = first + offsets[i + 1] if i + 1 < len(offsets) else len(data)
                found[inner] = (data[first + offsets[i] : end], b"")
    return found


def _cmap(data: bytes) -> tuple[dict[str, str], int]:
    mapping: dict[str, str] = {}
    width = 4
    for block in BFCHAR.findall(data):
        pairs = HEX.findall(block)
        for src, dst in zip(pairs[::2], pairs[1::2], strict=False):
            width = len(src)
            mapping[src.decode().upper()] = bytes.fromhex(dst.decode()).decode("utf-16-be")
    for block in BFRANGE.findall(data):
        values = HEX.findall(block)
        for start, end, dst in zip(values[::3], values[1::3], values[2::3], strict=False):
            width = len(start)
            first = int(dst, 16)
            for offset, code in enumerate(range(int(start, 16), int(end, 16) + 1)):
                mapping[f"{code:0{len(start)}X}"] = chr(first + offset)
    return mapping, width


def pdf_text(pdf: bytes) -> str:
    objects = _objects(pdf)
    cmaps: dict[int, tuple[dict[str, str], int]] = {}
    for number, (head, _data) in objects.items():
        ref = re.search(rb"/ToUnicode (\d+) 0 R", head)
        if ref and int(ref.group(1)) in objects:
            cmaps[number] = _cmap(objects[int(ref.group(1))][1])
    font_names: dict[bytes, int] = {}
    for head, _data in objects.values():
        # Font resources, inline or in their own object: "/KTGASA 13 0 R" naming a font with a CMap.
        for name, number in re.findall(rb"/([^\s/<>\[\]]+)\s+(\d+) 0 R", head):
            if int(number) in cmaps:
                font_names[name] = int(number)
    lines: list[str] = []
    for head, data in objects.values():
        if not data or b"Tf" not in data or b"/Type /Font" in head:
            continue
        current: tuple[dict[str, str], int] = ({}, 4)
        line: list[str] = []
        for font, text, op in TOKEN.findall(data):
            if font:
                current = cmaps.get(font_names.get(font, -1), ({}, 4))
            elif op:
                if line:
                    lines.append("".join(line))
                    line = []
            else:
                mapping, width = current
                hexed = text.decode().upper()
                line.append("".join(mapping.get(hexed[i : i + width], "") for i in range(0, len(hexed), width)))
        if line:
            lines.append("".join(line))
    return "\n".join(lines)
