import asyncio
from unittest.mock import Mock

import aiohttp

from stellara.providers._sse import SSEEvent, iter_sse


def reader(*pieces: bytes) -> aiohttp.StreamReader:
    stream = aiohttp.StreamReader(Mock(), 2**16, loop=asyncio.get_running_loop())
    for piece in pieces:
        stream.feed_data(piece)
    stream.feed_eof()
    return stream


async def events_of(*pieces: bytes) -> list[tuple[str, bytes]]:
    return [(event.event, event.data) async for event in iter_sse(reader(*pieces))]


async def test_sse_single_data_events():
    events = await events_of(b'data: {"a":1}\n\ndata: [DONE]\n\n')
    assert events == [("", b'{"a":1}'), ("", b"[DONE]")]


async def test_sse_yields_sse_event_objects():
    (event,) = [e async for e in iter_sse(reader(b"data: x\n\n"))]
    assert isinstance(event, SSEEvent)
    assert event.data == b"x"
    assert event.event == ""


async def test_sse_multi_line_data_joined_with_newline():
    events = await events_of(b"data: first\ndata: second\ndata:third\n\n")
    assert events == [("", b"first\nsecond\nthird")]


async def test_sse_only_one_leading_space_removed():
    events = await events_of(b"data:   indented \n\n")
    assert events == [("", b"  indented ")]


async def test_sse_event_names():
    events = await events_of(
        b"event: message_start\ndata: {}\n\ndata: unnamed\n\nevent:ping\ndata: p\n\n"
    )
    assert events == [("message_start", b"{}"), ("", b"unnamed"), ("ping", b"p")]


async def test_sse_comments_and_ids_skipped():
    events = await events_of(b": keep-alive\n\nid: 7\n: comment\ndata: x\nretry: 100\n\n")
    assert events == [("", b"x")]


async def test_sse_event_without_data_not_yielded_and_name_reset():
    events = await events_of(b"event: lonely\n\ndata: y\n\n")
    assert events == [("", b"y")]


async def test_sse_crlf_line_endings():
    events = await events_of(b"event: e\r\ndata: a\r\ndata: b\r\n\r\ndata: c\r\n\r\n")
    assert events == [("e", b"a\nb"), ("", b"c")]


async def test_sse_final_event_without_blank_line():
    events = await events_of(b"data: one\n\ndata: last")
    assert events == [("", b"one"), ("", b"last")]


async def test_sse_final_event_with_single_newline():
    events = await events_of(b"event: end\ndata: last\n")
    assert events == [("end", b"last")]


async def test_sse_event_split_across_reads():
    events = await events_of(b"da", b"ta: hel", b"lo\n", b"\n", b"data: wor", b"ld\n\n")
    assert events == [("", b"hello"), ("", b"world")]


async def test_sse_empty_stream_yields_nothing():
    assert await events_of() == []


async def test_sse_events_arrive_before_stream_ends():
    stream = aiohttp.StreamReader(Mock(), 2**16, loop=asyncio.get_running_loop())
    stream.feed_data(b"data: early\n\n")
    events = iter_sse(stream)
    first = await asyncio.wait_for(anext(events), timeout=5)
    assert first.data == b"early"
    stream.feed_data(b"data: late\n\n")
    stream.feed_eof()
    assert [e.data async for e in events] == [b"late"]
