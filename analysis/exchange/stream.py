"""Reading a Neuronpedia graph JSON file as a stream (ijson events), and a parse that runs ahead.

:func:`top` walks the top-level object: ``metadata``, ``qParams``, ``nodes`` and any other key
are built into a :class:`Header` (small), while each ``links`` element is yielded the moment it
is parsed (one Python step per event, no builder), so a file's links are never all in memory.
:func:`prefetched` runs such a stream in a thread a few batches ahead of its consumer.
"""

from __future__ import annotations

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
