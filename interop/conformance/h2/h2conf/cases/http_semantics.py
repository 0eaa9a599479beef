"""RFC 9113 §8: HTTP message framing, field validity, request pseudo-header fields.

Malformed requests (§8.1.1) are stream errors of type PROTOCOL_ERROR. Their header blocks are
written with `wire.block` (literal fields, in order, unnormalised) so that nothing between the
test and the wire repairs them.
"""

from .. import wire
from ..registry import case
from ..wire import PROTOCOL_ERROR
from .common import ready


def _send_fields(t, fields, end_stream=True):
    c = ready(t)
    c.send(wire.headers(1, wire.block(fields), end_stream=end_stream))
    return c


def _malformed(t, fields):
    return _send_fields(t, fields).expect_stream_error(1, PROTOCOL_ERROR)


def _base(t, method="GET"):
    return [(":method", method), (":scheme", "https" if t.tls else "http"),
            (":authority", t.authority), (":path", t.path)]


def _without(t, name):
    return [(n, v) for n, v in _base(t) if n != name]


# ---- §8.1 HTTP message framing ------------------------------------------------------------------


@case("http2/8.1", "content-length larger than the DATA sent")
def _(t):
    c = _send_fields(t, _base(t, "POST") + [("content-length", "10")], end_stream=False)
    c.send(wire.data(1, b"abc"))
    return c.expect_stream_error(1, PROTOCOL_ERROR)


@case("http2/8.1", "content-length smaller than the DATA sent")
def _(t):
    c = _send_fields(t, _base(t, "POST") + [("content-length", "1")], end_stream=False)
    c.send(wire.data(1, b"abc"))
    return c.expect_stream_error(1, PROTOCOL_ERROR)


@case("http2/8.1", "request with trailers is answered")
def _(t):
    c = _send_fields(t, _base(t, "POST"), end_stream=False)
    c.send(wire.data(1, b"body", end_stream=False),
           wire.headers(1, wire.block([("x-trailer", "done")]), end_stream=True))
    return c.expect_response(1, "a response to a request with a trailer section")


@case("http2/8.1", "second HEADERS without END_STREAM")
def _(t):
    c = _send_fields(t, _base(t, "POST"), end_stream=False)
    c.send(wire.data(1, b"body", end_stream=False),
           wire.headers(1, wire.block([("x-trailer", "done")]), end_stream=False))
    return c.expect_stream_error(1, PROTOCOL_ERROR)


@case("http2/8.1", "pseudo-header field in trailers")
def _(t):
    c = _send_fields(t, _base(t, "POST"), end_stream=False)
    c.send(wire.data(1, b"body", end_stream=False),
           wire.headers(1, wire.block([(":method", "POST")]), end_stream=True))
    return c.expect_stream_error(1, PROTOCOL_ERROR)


# ---- §8.2 field validity ------------------------------------------------------------------------


@case("http2/8.2.1", "uppercase field name")
def _(t):
    return _malformed(t, _base(t) + [("X-Upper", "1")])


@case("http2/8.2.1", "field name with a space")
def _(t):
    return _malformed(t, _base(t) + [("x bad", "1")])


@case("http2/8.2.1", "field value with CR LF")
def _(t):
    return _malformed(t, _base(t) + [("x-split", "a\r\nx-injected: 1")])


@case("http2/8.2.1", "field value with NUL")
def _(t):
    return _malformed(t, _base(t) + [("x-nul", "a\0b")])


@case("http2/8.2.1", "field value with leading whitespace")
def _(t):
    return _malformed(t, _base(t) + [("x-space", " a")])


for name, value in [("connection", "keep-alive"), ("keep-alive", "timeout=5"),
                    ("proxy-connection", "keep-alive"), ("transfer-encoding", "chunked"),
                    ("upgrade", "h2c"), ("te", "gzip")]:
    case("http2/8.2.2", f"connection-specific field {name}: {value}")(
        lambda t, n=name, v=value: _malformed(t, _base(t) + [(n, v)]))


@case("http2/8.2.2", "te: trailers is allowed")
def _(t):
    c = _send_fields(t, _base(t) + [("te", "trailers")])
    return c.expect_response(1, "a response to a request with te: trailers")


# ---- §8.3 request pseudo-header fields ----------------------------------------------------------


@case("http2/8.3.1", "missing :method")
def _(t):
    return _malformed(t, _without(t, ":method"))


@case("http2/8.3.1", "missing :scheme")
def _(t):
    return _malformed(t, _without(t, ":scheme"))


@case("http2/8.3.1", "missing :path")
def _(t):
    return _malformed(t, _without(t, ":path"))


@case("http2/8.3.1", "duplicated :method")
def _(t):
    return _malformed(t, _base(t) + [(":method", "GET")])


@case("http2/8.3.1", "duplicated :scheme")
def _(t):
    return _malformed(t, _base(t) + [(":scheme", "http")])


@case("http2/8.3.1", "duplicated :path")
def _(t):
    return _malformed(t, _base(t) + [(":path", "/")])


@case("http2/8.3.1", "empty :path")
def _(t):
    return _malformed(t, [(n, "" if n == ":path" else v) for n, v in _base(t)])


@case("http2/8.3", "unknown pseudo-header field")
def _(t):
    return _malformed(t, _base(t) + [(":foo", "bar")])


@case("http2/8.3", "response pseudo-header field (:status) in a request")
def _(t):
    return _malformed(t, _base(t) + [(":status", "200")])


@case("http2/8.3", "pseudo-header field after a regular field")
def _(t):
    fields = _base(t)
    return _malformed(t, fields[:2] + [("x-regular", "1")] + fields[2:])


# ---- §8.4 server push ---------------------------------------------------------------------------


@case("http2/8.4", "PUSH_PROMISE from a client")
def _(t):
    c = ready(t)
    c.request(1, end_stream=False)
    promised = (2).to_bytes(4, "big")
    c.send(wire.frame(wire.PUSH_PROMISE, wire.END_HEADERS, 1, promised + c.fields_block()))
    return c.expect_connection_error(PROTOCOL_ERROR)
