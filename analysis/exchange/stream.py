"""Reading a Neuronpedia graph JSON file as a stream, and a parse that runs ahead.

:func:`top` walks the top-level object through ijson's events: ``metadata``, ``qParams``,
``nodes`` and any other key are built into a :class:`Header` (small), while each ``links``
element is yielded the moment it is parsed (one Python step per event, no builder).
The import reads the links faster: :func:`links_start` finds the top-level ``links`` array's
byte offset (a token scan of what precedes it) and :class:`LinkArray` decodes the array a block
of bytes at a time with one ``json.loads`` per block (links are flat objects; anything else
falls back to one element at a time), so a file's links are never all in memory either.
:func:`prefetched` runs such a stream in a thread a few batches ahead of its consumer.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from analysis.exchange.neuronpedia import FormatError


@dataclass
class Header:
    metadata: dict[str, Any] | None = None
    qparams: dict[str, Any] = field(default_factory=dict)
    nodes: list[dict[str, Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def events(f: IO[bytes]) -> Iterator[tuple[str, str, Any]]:
    import ijson

    return ijson.parse(f, use_float=True)


def build(event: str, value: Any, events: Iterator[tuple[str, str, Any]]) -> Any:
    """The JSON value that starts with (``event``, ``value``), read from ``events``."""
    import ijson

    if event not in ("start_map", "start_array"):
        return value
    builder = ijson.ObjectBuilder()
    builder.event(event, value)
    depth = 1
    for _, ev, val in events:
        builder.event(ev, val)
        if ev in ("start_map", "start_array"):
            depth += 1
        elif ev in ("end_map", "end_array"):
            depth -= 1
            if depth == 0:
                break
    return builder.value


def links(events: Iterator[tuple[str, str, Any]]) -> Iterator[dict[str, Any]]:
    """The link objects of a ``links`` array whose ``start_array`` was just read (flat maps:
    one Python step per event, no builder)."""
    link: dict[str, Any] = {}
    key = ""
    for _, event, value in events:
        if event == "map_key":
            key = value
        elif event == "end_map":
            yield link
        elif event == "start_map":
            link = {}
        elif event == "end_array":
            return
        elif event == "start_array":
            link[key] = build(event, value, events)
        else:
            link[key] = value


def top(events: Iterator[tuple[str, str, Any]], header: Header, *, links_ok: bool) -> Iterator[dict[str, Any]]:
    """Walk the top-level object: fill ``header``; yield links when ``links_ok``, else skip them."""
    first = next(events, None)
    if first is None or first[1] != "start_map":
        raise FormatError("the file is not a JSON object")
    for prefix, event, value in events:
        if prefix == "" and event == "end_map":
            return
        if event != "map_key":
            continue
        _, ev, val = next(events)
        if value == "links":
            if ev != "start_array":
                raise FormatError("'links' is not a list")
            if links_ok:
                yield from links(events)
            else:
                for _ in links(events):
                    pass
            continue
        obj = build(ev, val, events)
        if value == "metadata":
            header.metadata = obj
        elif value == "qParams":
            header.qparams = obj
        elif value == "nodes":
            header.nodes = obj
        else:
            header.extra[value] = obj


def prefetched(rows: Iterator[dict[str, Any]], chunk: int) -> Iterator[dict[str, Any]]:
    """``rows``, produced by a thread up to two chunks ahead: the parse of the next links runs
    while the writer waits for the server to commit the last batch (the driver releases the
    GIL while it waits), so an import runs at the writer's rate, not parse + write. An error
    in the parse is raised here, at the row it happened."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()
    done = object()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            buf = []
            for row in rows:
                buf.append(row)
                if len(buf) >= chunk:
                    if not put(buf):
                        return
                    buf = []
            if buf and not put(buf):
                return
            put(done)
        except BaseException as e:  # handed to the consumer, raised there
            put(e)

    thread = threading.Thread(target=work, name="neuronpedia-parse", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield from item
    finally:
        stop.set()
        thread.join()


# -- the links array, decoded in blocks ----------------------------------------------------
# ijson yields a link in ~8 events, each a Python step (~8 us a link); the links of a Neuronpedia
# file are flat objects, so a block of them decodes with one json.loads (~1.6 us a link). The
# header around them (metadata, qParams, nodes: small) still goes through ijson.
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[{}\[\]]|"')
_BLOCK = 1 << 18


def links_start(f: IO[bytes], block: int = 1 << 20) -> int | None:
    """Byte offset just after the ``[`` of the top-level ``"links"`` array, or ``None`` (no such
    key where expected, or anything unusual: the caller then reads the file with ijson alone)."""
    f.seek(0)
    buf, base, depth, eof = b"", 0, 0, False
    while not eof:
        data = f.read(block)
        eof = not data
        buf += data
        keep = len(buf)
        for m in _TOKEN.finditer(buf):
            tok = m.group()
            if tok == b'"':                          # a string the block cuts: read on
                keep = m.start()
                break
            if tok in (b"{", b"["):
                depth += 1
            elif tok in (b"}", b"]"):
                depth -= 1
            elif depth == 1 and tok == b'"links"':
                rest = buf[m.end():m.end() + 256].lstrip()
                if len(rest) < 2 and not eof:
                    keep = m.start()
                    break
                if rest[:1] == b":":
                    after = rest[1:].lstrip()
                    if after[:1] != b"[":
                        return None
                    return base + buf.index(b"[", m.end()) + 1
        base += keep
        buf = buf[keep:]
        if eof or depth < 0:
            return None
    return None


class LinkArray:
    """The elements of the JSON array whose first element starts at byte ``start`` of ``f``,
    decoded a block at a time; ``end`` is the offset just after its ``]`` once iterated."""

    def __init__(self, f: IO[bytes], start: int, block: int = _BLOCK) -> None:
        self.f, self.start, self.block = f, start, block
        self.end: int | None = None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        import json

        f = self.f
        f.seek(self.start)
        buf, base, pos, eof = b"", self.start, 0, False
        n, need = 0, True          # elements so far; an element (not a separator) comes next
        bulk = True                # False after a block decode failed, until the next read

        def more() -> bool:
            nonlocal buf, base, pos, eof, bulk
            if eof:
                return False
            data = f.read(self.block)
            eof = not data
            buf, base, pos, bulk = buf[pos:] + data, base + pos, 0, True
            return bool(data)

        while True:
            while pos < len(buf) and buf[pos] in b" \t\r\n":
                pos += 1
            if pos >= len(buf):
                if not more():
                    raise FormatError("not valid JSON (the file ends inside 'links')")
                continue
            c = buf[pos:pos + 1]
            if c == b"]" and (n == 0 or not need):
                self.end = base + pos + 1
                return
            if not need:
                if c != b",":
                    raise FormatError(f"not valid JSON (after link {n - 1}, {c!r} where ',' or ']' belongs)")
                pos, need = pos + 1, True
                continue
            if c != b"{":
                raise FormatError(f"link {n} is not an object")
            # Up to the last "}," of the block: whole elements, unless they nest objects.
            cut = buf.rfind(b"},", pos)
            items = None
            if bulk and cut > pos:
                try:
                    items = json.loads(b"[" + buf[pos:cut + 1] + b"]")
                except ValueError:
                    bulk = False    # element by element until the next block
            if items is None:       # no "}," left, or nested objects: one element
                items, cut = self._one(buf, pos), None
                while items is None:
                    if not more():
                        raise FormatError("not valid JSON (the file ends inside 'links')")
                    items = self._one(buf, pos)
                items, cut = [items[0]], items[1]
            yield from items
            n += len(items)
            pos, need = cut + 1, False

    @staticmethod
    def _one(buf: bytes, pos: int) -> tuple[Any, int] | None:
        """(the element starting at ``pos``, the offset of its closing ``}``), or None when no
        ``}`` in ``buf`` closes it."""
        import json

        k = buf.find(b"}", pos)
        while k >= 0:
            try:
                return json.loads(buf[pos:k + 1]), k
            except ValueError:
                k = buf.find(b"}", k + 1)
        return None
