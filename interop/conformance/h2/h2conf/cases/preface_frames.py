"""RFC 9113 §3.4 (connection preface), §4 (frames, sizes, header compression), §5.5 (extensions).
"""

from .. import wire
from ..conn import Mismatch, Outcome, Rx
from ..registry import case
from ..wire import COMPRESSION_ERROR, FRAME_SIZE_ERROR, PROTOCOL_ERROR
from .common import ready, stalled


@case("http2/3.4", "valid preface: the server's first frame is SETTINGS, ours is ACKed")
def _(t):
    c = t.connect()
    c.send(wire.PREFACE, wire.settings({wire.ENABLE_PUSH: 0}))
    expected = "SETTINGS (not ACK) first, then an ACK of ours"
    first = c.read(c._deadline())
    if not isinstance(first, Rx) or not first.is_(wire.SETTINGS) or first.flags & wire.ACK:
        raise Mismatch(expected, "first: " + ("timeout" if first is None else first.describe()))
    c.read_until(lambda ev: ev.is_(wire.SETTINGS) and ev.flags & wire.ACK, expected)
    return Outcome(expected, "SETTINGS, then SETTINGS ACK")


@case("http2/3.4", "invalid connection preface")
def _(t):
    c = t.connect()
    c.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", wire.settings())
    return c.expect_connection_error(PROTOCOL_ERROR, goaway_optional=True)


@case("http2/3.4", "preface followed by a frame other than SETTINGS")
def _(t):
    c = t.connect()
    c.send(wire.PREFACE, wire.ping())
    return c.expect_connection_error(PROTOCOL_ERROR, goaway_optional=True)


@case("http2/4.1", "frame of an unknown type is ignored")
def _(t):
    c = ready(t)
    c.send(wire.frame(0x20, 0, 0, b"unknown frame type"))
    return c.expect_ping_ack()


@case("http2/4.1", "undefined flags are ignored (PING with flags 0xfe)")
def _(t):
    c = ready(t)
    c.send(wire.frame(wire.PING, 0xFE, 0, b"flags!!!"))
    expected = "PING ACK with the same payload"
    ev = c.read_until(lambda ev: ev.is_(wire.PING) and ev.flags & wire.ACK, expected)
    if ev.payload != b"flags!!!":
        raise Mismatch(expected, f"PING ACK with payload {ev.payload!r}")
    return Outcome(expected, "PING ACK with the same payload")


@case("http2/4.1", "reserved bit of the stream identifier is ignored (PING)")
def _(t):
    c = ready(t)
    c.send(wire.frame(wire.PING, 0, 0x80000000, b"reserved"))
    expected = "PING ACK with the same payload"
    ev = c.read_until(lambda ev: ev.is_(wire.PING) and ev.flags & wire.ACK, expected)
    if ev.payload != b"reserved":
        raise Mismatch(expected, f"PING ACK with payload {ev.payload!r}")
    return Outcome(expected, "PING ACK with the same payload")


@case("http2/4.2", "DATA of exactly SETTINGS_MAX_FRAME_SIZE octets is accepted")
def _(t):
    c = ready(t)
    size = c.server_settings.get(wire.MAX_FRAME_SIZE, 16384)
    if size > 65535:
        size = 16384  # stay inside the initial flow-control window
    c.request(1, method="POST", end_stream=False)
    c.send(wire.data(1, b"x" * size))
    out = c.expect_response(1, f"a response to a POST with one {size}-octet DATA frame")
    c.expect_ping_ack()
    return out


@case("http2/4.2", "DATA larger than SETTINGS_MAX_FRAME_SIZE")
def _(t):
    c = ready(t)
    size = c.server_settings.get(wire.MAX_FRAME_SIZE, 16384)
    c.request(1, method="POST", end_stream=False)
    c.send(wire.data(1, b"x" * (size + 1)))
    return c.expect_stream_or_connection_error(1, FRAME_SIZE_ERROR)


@case("http2/4.2", "HEADERS larger than SETTINGS_MAX_FRAME_SIZE")
def _(t):
    c = ready(t)
    size = c.server_settings.get(wire.MAX_FRAME_SIZE, 16384)
    fields = c.base_fields() + [("x-large", "a" * size)]
    c.send(wire.headers(1, wire.block(fields)))
    return c.expect_connection_error(FRAME_SIZE_ERROR)


@case("http2/4.3", "header block that cannot be decoded")
def _(t):
    c = ready(t)
    # Literal with incremental indexing, new name, name length 5 but only 2 octets follow.
    c.send(wire.headers(1, b"\x40\x85ab"))
    return c.expect_connection_error(COMPRESSION_ERROR)


@case("http2/5.5", "unknown extension frame on an open stream is ignored")
def _(t):
    c = stalled(t)
    c.send(wire.frame(0x21, 0x5, 1, b"extension"))
    return c.expect_ping_ack()


@case("http2/5.5", "unknown extension frame in the middle of a header block")
def _(t):
    c = ready(t)
    blk = c.fields_block()
    c.send(wire.headers(1, blk[:2], end_headers=False),
           wire.frame(0x21, 0, 0, b"extension"),
           wire.continuation(1, blk[2:]))
    return c.expect_connection_error(PROTOCOL_ERROR)


