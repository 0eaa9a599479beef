"""RFC 9113 §6: the frame definitions, one group per frame type."""

import struct

from .. import wire
from ..conn import Mismatch, Outcome
from ..registry import case
from ..wire import (FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR, MAX_WINDOW, PROTOCOL_ERROR)
from .common import ready, stalled

# ---- §6.1 DATA ----------------------------------------------------------------------------------


@case("http2/6.1", "DATA on stream 0")
def _(t):
    c = ready(t)
    c.send(wire.data(0, b"test"))
    return c.expect_connection_error(PROTOCOL_ERROR)


@case("http2/6.1", "DATA with valid padding is accepted")
def _(t):
    c = ready(t)
    c.request(1, method="POST", end_stream=False)
    c.send(wire.data(1, b"padded body", pad_length=20))
    return c.expect_response(1, "a response to a POST whose DATA is padded")


@case("http2/6.1", "DATA whose padding length exceeds the payload")
def _(t):
    c = ready(t)
    c.request(1, method="POST", end_stream=False)
    # Pad Length 10, but only 3 octets follow it.
    c.send(wire.frame(wire.DATA, wire.PADDED | wire.END_STREAM, 1, bytes([10]) + b"abc"))
    return c.expect_connection_error(PROTOCOL_ERROR)


# ---- §6.2 HEADERS -------------------------------------------------------------------------------


@case("http2/6.2", "HEADERS on stream 0")
def _(t):
    c = ready(t)
    c.send(wire.headers(0, c.fields_block()))
    return c.expect_connection_error(PROTOCOL_ERROR)


@case("http2/6.2", "HEADERS with valid padding is accepted")
def _(t):
    c = ready(t)
    c.send(wire.headers(1, c.fields_block(), pad_length=30))
    return c.expect_response(1, "a response to padded HEADERS")


@case("http2/6.2", "HEADERS with a priority block is accepted")
def _(t):
    c = ready(t)
    c.send(wire.headers(1, c.fields_block(), priority=(0, 255, True)))
    return c.expect_response(1, "a response to HEADERS carrying a priority")


@case("http2/6.2", "HEADERS whose padding length exceeds the payload")
def _(t):
    c = ready(t)
    blk = c.fields_block()
    flags = wire.PADDED | wire.END_HEADERS | wire.END_STREAM
    c.send(wire.frame(wire.HEADERS, flags, 1, bytes([len(blk) + 1]) + blk))
    return c.expect_connection_error(PROTOCOL_ERROR)


# ---- §6.3 PRIORITY ------------------------------------------------------------------------------


@case("http2/6.3", "PRIORITY on stream 0")
def _(t):
    c = ready(t)
    c.send(wire.priority(0, depends_on=1))
    return c.expect_connection_error(PROTOCOL_ERROR)


@case("http2/6.3", "PRIORITY with a length other than 5")
def _(t):
    c = stalled(t)
    c.send(wire.frame(wire.PRIORITY, 0, 1, b"\0\0\0\0"))
    return c.expect_stream_error(1, FRAME_SIZE_ERROR)


# ---- §6.4 RST_STREAM ----------------------------------------------------------------------------


@case("http2/6.4", "RST_STREAM on stream 0")
def _(t):
    c = ready(t)
    c.send(wire.frame(wire.RST_STREAM, 0, 0, struct.pack(">I", wire.CANCEL)))
    return c.expect_connection_error(PROTOCOL_ERROR)


@case("http2/6.4", "RST_STREAM with a length other than 4")
def _(t):
    c = stalled(t)
    c.send(wire.frame(wire.RST_STREAM, 0, 1, b"\0\0\x08"))
    return c.expect_connection_error(FRAME_SIZE_ERROR)


@case("http2/6.4", "RST_STREAM on an active stream cancels only that stream")
def _(t):
    c = stalled(t)
    c.send(wire.rst_stream(1, wire.CANCEL))
    c.expect_ping_ack()
    c.request(3, path=t.path)
    return c.expect_response(3, "stream 1 reset by the client, then a response on stream 3")


# ---- §6.5 SETTINGS ------------------------------------------------------------------------------


@case("http2/6.5", "SETTINGS ACK with a payload")
def _(t):
    c = ready(t)
    c.send(wire.settings_raw([(wire.INITIAL_WINDOW_SIZE, 65535)], flags=wire.ACK))
    return c.expect_connection_error(FRAME_SIZE_ERROR)


@case("http2/6.5", "SETTINGS on a stream other than 0")
def _(t):
    c = ready(t)
    c.send(wire.settings_raw([(wire.INITIAL_WINDOW_SIZE, 65535)], stream=1))
    return c.expect_connection_error(PROTOCOL_ERROR)


@case("http2/6.5", "SETTINGS with a length not a multiple of 6")
def _(t):
    c = ready(t)
    c.send(wire.frame(wire.SETTINGS, 0, 0, b"\0\x03\0\0"))
    return c.expect_connection_error(FRAME_SIZE_ERROR)


@case("http2/6.5.2", "SETTINGS_ENABLE_PUSH other than 0 or 1")
def _(t):
    c = ready(t)
    c.send(wire.settings_raw([(wire.ENABLE_PUSH, 2)]))
    return c.expect_connection_error(PROTOCOL_ERROR)


@case("http2/6.5.2", "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1")
def _(t):
    c = ready(t)
    c.send(wire.settings_raw([(wire.INITIAL_WINDOW_SIZE, 2**31)]))
    return c.expect_connection_error(FLOW_CONTROL_ERROR)


@case("http2/6.5.2", "SETTINGS_MAX_FRAME_SIZE below 16384")
def _(t):
    c = ready(t)
    c.send(wire.settings_raw([(wire.MAX_FRAME_SIZE, 16383)]))
    return c.expect_connection_error(PROTOCOL_ERROR)


@case("http2/6.5.2", "SETTINGS_MAX_FRAME_SIZE above 2^24-1")
def _(t):
    c = ready(t)
    c.send(wire.settings_raw([(wire.MAX_FRAME_SIZE, 2**24)]))
    return c.expect_connection_error(PROTOCOL_ERROR)


@case("http2/6.5.2", "unknown setting identifier is ignored")
def _(t):
    c = ready(t)
    c.send(wire.settings_raw([(0xFF, 1)]))
    expected = "SETTINGS ACK (unknown setting ignored)"
    c.read_until(lambda ev: ev.is_(wire.SETTINGS) and ev.flags & wire.ACK, expected)
    c.expect_ping_ack()
    return Outcome(expected, "SETTINGS ACK, connection usable")


@case("http2/6.5.2", "a response head stays within SETTINGS_MAX_HEADER_LIST_SIZE")
def _(t):
    # "An implementation that has received this parameter SHOULD NOT send an HTTP message
    # header that exceeds the indicated size." 300 octets cannot hold a file's head (type,
    # validators, date, length, ...); the answer must be one that fits, not the usual head.
    limit = 300
    c = ready(t, {wire.MAX_HEADER_LIST_SIZE: limit})
    c.request(1)
    expected = f"a response head of at most {limit} octets (name + value + 32 per field)"
    ev = c.read_until(lambda ev: ev.is_(wire.HEADERS, 1) or ev.is_(wire.RST_STREAM, 1), expected)
    if ev.is_(wire.RST_STREAM):
        raise Mismatch(expected, ev.describe())
    size = sum(len(n) + len(v) + 32 for n, v in ev.fields)
    if size > limit:
        raise Mismatch(expected, f"{ev.describe()} of {size} octets")
    return Outcome(expected, f"{ev.describe()} of {size} octets")


@case("http2/6.5.3", "SETTINGS with values is acknowledged")
def _(t):
    c = ready(t)
    c.send(wire.settings({wire.INITIAL_WINDOW_SIZE: 100, wire.MAX_HEADER_LIST_SIZE: 1 << 20}))
    expected = "SETTINGS ACK with an empty payload"
    ev = c.read_until(lambda ev: ev.is_(wire.SETTINGS) and ev.flags & wire.ACK, expected)
    if ev.payload:
        raise Mismatch(expected, f"SETTINGS ACK with {len(ev.payload)} octets")
    return Outcome(expected, "SETTINGS ACK with an empty payload")


# ---- §6.7 PING ----------------------------------------------------------------------------------


@case("http2/6.7", "PING is answered by an ACK with the same payload")
def _(t):
    c = ready(t)
    return c.expect_ping_ack(b"\x01\x02\x03\x04\x05\x06\x07\x08")


@case("http2/6.7", "PING with ACK set is not answered")
def _(t):
    c = ready(t)
    c.send(wire.ping(b"unasked!", ack=True), wire.ping(b"asked!!!"))
    expected = "only the PING without ACK answered"
    ev = c.read_until(lambda ev: ev.is_(wire.PING), expected)
    if not ev.flags & wire.ACK or ev.payload != b"asked!!!":
        raise Mismatch(expected, f"{ev.describe()} with payload {ev.payload!r}")
    return Outcome(expected, "PING ACK for the second PING only")


@case("http2/6.7", "PING on a stream other than 0")
def _(t):
    c = ready(t)
    c.send(wire.frame(wire.PING, 0, 1, b"\0" * 8))
    return c.expect_connection_error(PROTOCOL_ERROR)


@case("http2/6.7", "PING with a length other than 8")
def _(t):
    c = ready(t)
    c.send(wire.frame(wire.PING, 0, 0, b"\0" * 6))
    return c.expect_connection_error(FRAME_SIZE_ERROR)


# ---- §6.8 GOAWAY --------------------------------------------------------------------------------


@case("http2/6.8", "GOAWAY on a stream other than 0")
def _(t):
    c = ready(t)
    c.send(wire.frame(wire.GOAWAY, 0, 1, struct.pack(">II", 0, wire.NO_ERROR)))
    return c.expect_connection_error(PROTOCOL_ERROR)


# ---- §6.9 WINDOW_UPDATE -------------------------------------------------------------------------


@case("http2/6.9", "WINDOW_UPDATE with increment 0 on the connection")
def _(t):
    c = ready(t)
    c.send(wire.window_update(0, 0))
    return c.expect_connection_error(PROTOCOL_ERROR)


@case("http2/6.9", "WINDOW_UPDATE with increment 0 on a stream")
def _(t):
    c = stalled(t)
    c.send(wire.window_update(1, 0))
    return c.expect_stream_error(1, PROTOCOL_ERROR)


@case("http2/6.9", "WINDOW_UPDATE with a length other than 4")
def _(t):
    c = ready(t)
    c.send(wire.frame(wire.WINDOW_UPDATE, 0, 0, b"\0\0\x01"))
    return c.expect_connection_error(FRAME_SIZE_ERROR)


@case("http2/6.9.1", "connection window above 2^31-1")
def _(t):
    c = ready(t)
    # The server's send window starts at 65535 and nothing is requested: the first
    # increment brings it to exactly 2^31-1 (allowed), the second overflows it.
    c.send(wire.window_update(0, MAX_WINDOW - 65535), wire.window_update(0, 1))
    return c.expect_connection_error(FLOW_CONTROL_ERROR)


@case("http2/6.9.1", "stream window above 2^31-1")
def _(t):
    # Stream windows start at 2^31-1; the large response stops at the 65535-octet
    # connection window, so the stream stays active with most of its window left.
    c = ready(t, {wire.INITIAL_WINDOW_SIZE: MAX_WINDOW})
    c.request(1, path=t.large_path)
    c.send(wire.window_update(1, MAX_WINDOW))
    return c.expect_stream_error(1, FLOW_CONTROL_ERROR)


@case("http2/6.9.2", "SETTINGS_INITIAL_WINDOW_SIZE change applies to active streams")
def _(t):
    c = stalled(t)
    c.send(wire.settings({wire.INITIAL_WINDOW_SIZE: 1}))
    expected = "one DATA octet on stream 1 after the window grows from 0 to 1"
    ev = c.read_until(lambda ev: ev.is_(wire.DATA, 1) or ev.is_(wire.RST_STREAM, 1), expected)
    if not ev.is_(wire.DATA) or len(ev.payload) != 1:
        raise Mismatch(expected, ev.describe())
    return Outcome(expected, ev.describe())


@case("http2/6.9.2", "SETTINGS_INITIAL_WINDOW_SIZE change that makes a stream window negative")
def _(t):
    c = ready(t, {wire.INITIAL_WINDOW_SIZE: 3})
    c.request(1)
    expected = "3 DATA octets; none while the window is -1 then 0; 1 octet once it is 1"
    first = c.read_until(lambda ev: ev.is_(wire.DATA, 1) or ev.is_(wire.RST_STREAM, 1), expected)
    if not first.is_(wire.DATA) or len(first.payload) != 3:
        raise Mismatch(expected, first.describe())
    # 3 - 3 sent = 0; lowering the initial size from 3 to 2 leaves -1 (RFC 9113 §6.9.2), and
    # one octet of WINDOW_UPDATE brings it back to 0: the server must still send nothing.
    probe = b"window:0"
    c.send(wire.settings({wire.INITIAL_WINDOW_SIZE: 2}), wire.window_update(1, 1),
           wire.ping(probe))
    ev = c.read_until(lambda ev: ev.is_(wire.DATA, 1) or ev.is_(wire.RST_STREAM, 1)
                      or (ev.is_(wire.PING) and ev.flags & wire.ACK and ev.payload == probe),
                      expected)
    if not ev.is_(wire.PING):
        raise Mismatch(expected, ev.describe() + " while the stream window was 0")
    c.send(wire.window_update(1, 1))
    ev = c.read_until(lambda ev: ev.is_(wire.DATA, 1) or ev.is_(wire.RST_STREAM, 1), expected)
    if not ev.is_(wire.DATA) or len(ev.payload) != 1:
        raise Mismatch(expected, ev.describe())
    return Outcome(expected, "3 octets, PING ACK with nothing before it, then " + ev.describe())


@case("http2/6.9.2", "SETTINGS_INITIAL_WINDOW_SIZE change that overflows a stream window")
def _(t):
    c = stalled(t, path=t.large_path)
    # The stream window becomes 2^31-1 less what the server sends, which the 65535-octet
    # connection window bounds; raising the initial size by 65536 must overflow it.
    c.send(wire.window_update(1, MAX_WINDOW), wire.settings({wire.INITIAL_WINDOW_SIZE: 65536}))
    return c.expect_connection_error(FLOW_CONTROL_ERROR)


# ---- §6.10 CONTINUATION -------------------------------------------------------------------------


@case("http2/6.10", "header block split over HEADERS and several CONTINUATION frames")
def _(t):
    c = ready(t)
    blk = c.fields_block()
    a, b = len(blk) // 3, 2 * len(blk) // 3
    c.send(wire.headers(1, blk[:a], end_headers=False),
           wire.continuation(1, blk[a:b], end_headers=False),
           wire.continuation(1, blk[b:]))
    return c.expect_response(1, "a response to a header block in three frames")


@case("http2/6.10", "CONTINUATION after a HEADERS that ended the block")
def _(t):
    c = ready(t)
    c.send(wire.headers(1, c.fields_block(), end_stream=True),
           wire.continuation(1, wire.block([("x-late", "1")])))
    return c.expect_connection_error(PROTOCOL_ERROR)


@case("http2/6.10", "CONTINUATION on stream 0 inside a header block")
def _(t):
    c = ready(t)
    blk = c.fields_block()
    c.send(wire.headers(1, blk[:2], end_headers=False), wire.continuation(0, blk[2:]))
    return c.expect_connection_error(PROTOCOL_ERROR)


@case("http2/6.10", "CONTINUATION on another stream inside a header block")
def _(t):
    c = ready(t)
    blk = c.fields_block()
    c.send(wire.headers(1, blk[:2], end_headers=False), wire.continuation(3, blk[2:]))
    return c.expect_connection_error(PROTOCOL_ERROR)


@case("http2/6.10", "PING interleaved in a header block")
def _(t):
    c = ready(t)
    blk = c.fields_block()
    c.send(wire.headers(1, blk[:2], end_headers=False), wire.ping(),
           wire.continuation(1, blk[2:]))
    return c.expect_connection_error(PROTOCOL_ERROR)


@case("http2/6.10", "PRIORITY interleaved in a header block")
def _(t):
    c = ready(t)
    blk = c.fields_block()
    c.send(wire.headers(1, blk[:2], end_headers=False), wire.priority(1),
           wire.continuation(1, blk[2:]))
    return c.expect_connection_error(PROTOCOL_ERROR)


@case("http2/6.10", "HEADERS on another stream inside a header block")
def _(t):
    c = ready(t)
    blk = c.fields_block()
    c.send(wire.headers(1, blk[:2], end_headers=False), wire.headers(3, blk))
    return c.expect_connection_error(PROTOCOL_ERROR)


@case("http2/6.10", "CONTINUATION after DATA, without a preceding HEADERS")
def _(t):
    c = ready(t)
    c.request(1, method="POST", end_stream=False)
    c.send(wire.data(1, b"body", end_stream=False),
           wire.continuation(1, wire.block([("x-late", "1")])))
    return c.expect_connection_error(PROTOCOL_ERROR)
