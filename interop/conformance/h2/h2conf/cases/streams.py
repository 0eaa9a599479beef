"""RFC 9113 §5: stream states, identifiers, concurrency, priority, error handling."""

from .. import wire
from ..conn import Mismatch, Outcome, Skip
from ..registry import case
from ..wire import FRAME_SIZE_ERROR, PROTOCOL_ERROR, REFUSED_STREAM, STREAM_CLOSED
from .common import closed_stream, ready, reset_stream, stalled

# ---- §5.1 idle ----------------------------------------------------------------------------------


@case("http2/5.1", "idle: DATA")
def _(t):
    c = ready(t)
    c.send(wire.data(1, b"test"))
    return c.expect_connection_error(PROTOCOL_ERROR)


@case("http2/5.1", "idle: RST_STREAM")
def _(t):
    c = ready(t)
    c.send(wire.rst_stream(1, wire.CANCEL))
    return c.expect_connection_error(PROTOCOL_ERROR)


@case("http2/5.1", "idle: WINDOW_UPDATE")
def _(t):
    c = ready(t)
    c.send(wire.window_update(1, 100))
    return c.expect_connection_error(PROTOCOL_ERROR)


@case("http2/5.1", "idle: CONTINUATION")
def _(t):
    c = ready(t)
    c.send(wire.continuation(1, c.fields_block()))
    return c.expect_connection_error(PROTOCOL_ERROR)


@case("http2/5.1", "idle: PRIORITY is allowed and opens nothing")
def _(t):
    c = ready(t)
    c.send(wire.priority(1, depends_on=0, weight=200))
    c.expect_ping_ack()
    c.request(3)
    return c.expect_response(3, "PRIORITY on idle stream 1 ignored, then a response on stream 3")


# ---- §5.1 half-closed (remote) ------------------------------------------------------------------


@case("http2/5.1", "half-closed (remote): DATA")
def _(t):
    c = stalled(t)
    c.send(wire.data(1, b"test"))
    return c.expect_stream_error(1, STREAM_CLOSED)


@case("http2/5.1", "half-closed (remote): HEADERS")
def _(t):
    c = stalled(t)
    c.send(wire.headers(1, c.fields_block()))
    return c.expect_stream_error(1, STREAM_CLOSED)


@case("http2/5.1", "half-closed (remote): CONTINUATION")
def _(t):
    c = stalled(t)
    c.send(wire.continuation(1, c.fields_block()))
    # §6.10: a CONTINUATION without an open header block is a connection error.
    return c.expect_connection_error(PROTOCOL_ERROR, STREAM_CLOSED)


# ---- §5.1 closed --------------------------------------------------------------------------------


@case("http2/5.1", "closed by RST_STREAM: DATA")
def _(t):
    c = reset_stream(t)
    c.send(wire.data(1, b"test"))
    return c.expect_stream_or_connection_error(1, STREAM_CLOSED)


@case("http2/5.1", "closed by RST_STREAM: HEADERS")
def _(t):
    c = reset_stream(t)
    c.send(wire.headers(1, c.fields_block()))
    return c.expect_stream_or_connection_error(1, STREAM_CLOSED)


@case("http2/5.1", "closed by RST_STREAM: CONTINUATION")
def _(t):
    c = reset_stream(t)
    c.send(wire.continuation(1, c.fields_block()))
    return c.expect_connection_error(PROTOCOL_ERROR, STREAM_CLOSED)


@case("http2/5.1", "closed by END_STREAM both ways: DATA")
def _(t):
    c = closed_stream(t)
    c.send(wire.data(1, b"test"))
    return c.expect_stream_or_connection_error(1, STREAM_CLOSED)


@case("http2/5.1", "closed by END_STREAM both ways: HEADERS")
def _(t):
    c = closed_stream(t)
    c.send(wire.headers(1, c.fields_block()))
    return c.expect_stream_or_connection_error(1, STREAM_CLOSED)


@case("http2/5.1", "closed by END_STREAM both ways: CONTINUATION")
def _(t):
    c = closed_stream(t)
    c.send(wire.continuation(1, c.fields_block()))
    return c.expect_connection_error(PROTOCOL_ERROR, STREAM_CLOSED)


# ---- §5.1.1 stream identifiers ------------------------------------------------------------------


@case("http2/5.1.1", "even-numbered stream identifier from the client")
def _(t):
    c = ready(t)
    c.request(2)
    return c.expect_connection_error(PROTOCOL_ERROR)


@case("http2/5.1.1", "stream identifier lower than one already opened")
def _(t):
    c = ready(t)
    c.request(5)
    c.request(3)
    return c.expect_connection_error(PROTOCOL_ERROR)


# ---- §5.1.2 concurrency -------------------------------------------------------------------------


@case("http2/5.1.2", "one stream more than SETTINGS_MAX_CONCURRENT_STREAMS")
def _(t):
    c = ready(t, {wire.INITIAL_WINDOW_SIZE: 0})
    limit = c.server_settings.get(wire.MAX_CONCURRENT_STREAMS)
    if limit is None or limit > 2000:
        raise Skip(f"server advertises SETTINGS_MAX_CONCURRENT_STREAMS {limit}")
    # Every stream asks for a body the server cannot send (window 0): all stay active.
    blocks = [wire.headers(2 * i + 1, c.fields_block()) for i in range(limit + 1)]
    c.send(*blocks)
    refused = 2 * limit + 1
    out = c.expect_stream_error(refused, REFUSED_STREAM, PROTOCOL_ERROR)
    early = [s for s in c.seen if s.startswith("RST_STREAM") and f"stream {refused}," not in s]
    if early:
        raise Mismatch(out.expected + f", streams 1..{refused - 2} kept", ", ".join(early[:3]))
    return Outcome(out.expected, f"limit {limit}: " + out.observed)


# ---- §5.3.1 stream dependencies -----------------------------------------------------------------


@case("http2/5.3.1", "HEADERS whose priority depends on its own stream")
def _(t):
    c = ready(t)
    c.send(wire.headers(1, c.fields_block(), priority=(1, 15, False)))
    return c.expect_stream_error(1, PROTOCOL_ERROR)


@case("http2/5.3.1", "PRIORITY that depends on its own stream")
def _(t):
    c = stalled(t)
    c.send(wire.priority(1, depends_on=1))
    return c.expect_stream_error(1, PROTOCOL_ERROR)


# ---- §5.4.1 connection error handling -----------------------------------------------------------


@case("http2/5.4.1", "connection error: GOAWAY names the last processed stream, then close")
def _(t):
    c = closed_stream(t)
    c.send(wire.frame(wire.PING, 0, 0, b"\0" * 6))
    out = c.expect_connection_error(FRAME_SIZE_ERROR)
    goaways = [s for s in c.seen if s.startswith("GOAWAY")]
    if not goaways or "last stream 1" not in goaways[-1]:
        raise Mismatch("GOAWAY FRAME_SIZE_ERROR with last stream 1", out.observed)
    return Outcome("GOAWAY FRAME_SIZE_ERROR with last stream 1, then close", out.observed)
