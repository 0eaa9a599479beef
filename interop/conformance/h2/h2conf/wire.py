"""Frame and header-block building blocks.

`frame()` writes any frame header a test wants, including ones that RFC 9113 forbids (wrong
lengths, wrong stream ids, undefined flags); the helpers above it build the valid frames with
hyperframe. `block()` and the `lit_*` helpers write HPACK header blocks by hand, so that a case
can put a header field where a conforming encoder never would (uppercase names, a pseudo-header
after a regular field, a table size update at the end of a block, bad Huffman padding).
"""

import struct

from hpack import Encoder
from hpack.hpack import encode_integer
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types (RFC 9113 §6).
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS = 0x0, 0x1, 0x2, 0x3, 0x4
PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0x5, 0x6, 0x7, 0x8, 0x9
FRAME_NAMES = {
    DATA: "DATA", HEADERS: "HEADERS", PRIORITY: "PRIORITY", RST_STREAM: "RST_STREAM",
    SETTINGS: "SETTINGS", PUSH_PROMISE: "PUSH_PROMISE", PING: "PING", GOAWAY: "GOAWAY",
    WINDOW_UPDATE: "WINDOW_UPDATE", CONTINUATION: "CONTINUATION",
}

# Flags.
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20

# Settings (RFC 9113 §6.5.2).
HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS = 0x1, 0x2, 0x3
INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE, MAX_HEADER_LIST_SIZE = 0x4, 0x5, 0x6

# Error codes (RFC 9113 §7).
ERROR_NAMES = [
    "NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT",
    "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR",
    "CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED",
]
(NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR, SETTINGS_TIMEOUT, STREAM_CLOSED,
 FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR, CONNECT_ERROR, ENHANCE_YOUR_CALM,
 INADEQUATE_SECURITY, HTTP_1_1_REQUIRED) = range(len(ERROR_NAMES))

MAX_WINDOW = 2**31 - 1


def error_name(code):
    return ERROR_NAMES[code] if 0 <= code < len(ERROR_NAMES) else f"0x{code:x}"


def frame(ftype, flags, stream, payload=b"", length=None):
    """Any frame: the 9-octet header (RFC 9113 §4.1) and the payload, unchecked.

    `length` overrides the length field, for frames whose header lies about their size.
    """
    n = len(payload) if length is None else length
    return struct.pack(">I", n)[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload


# ---- valid frames, built with hyperframe -------------------------------------------------------


def _on_stream(f, stream):
    """Serialise `f` (built on a placeholder stream) onto `stream`, which may be 0: hyperframe
    refuses stream 0 for stream-bound frames, and some cases need exactly that."""
    raw = f.serialize()
    return raw[:5] + struct.pack(">I", stream) + raw[9:]


def settings(values=None, ack=False):
    f = SettingsFrame(0, settings=values or {})
    if ack:
        f.flags.add("ACK")
    return f.serialize()


def settings_raw(pairs, flags=0, stream=0):
    """SETTINGS with any identifiers and values, including invalid ones."""
    return frame(SETTINGS, flags, stream, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


def headers(stream, block, end_stream=True, end_headers=True, pad_length=0, priority=None):
    """HEADERS carrying `block`. `priority` is (depends_on, weight, exclusive)."""
    f = HeadersFrame(stream or 1, data=block)
    if end_stream:
        f.flags.add("END_STREAM")
    if end_headers:
        f.flags.add("END_HEADERS")
    if pad_length:
        f.flags.add("PADDED")
        f.pad_length = pad_length
    if priority is not None:
        f.flags.add("PRIORITY")
        f.depends_on, f.stream_weight, f.exclusive = priority
    return _on_stream(f, stream)


def continuation(stream, block, end_headers=True):
    f = ContinuationFrame(stream or 1, data=block)
    if end_headers:
        f.flags.add("END_HEADERS")
    return _on_stream(f, stream)


def data(stream, payload, end_stream=True, pad_length=0):
    f = DataFrame(stream or 1, data=payload)
    if end_stream:
        f.flags.add("END_STREAM")
    if pad_length:
        f.flags.add("PADDED")
        f.pad_length = pad_length
    return _on_stream(f, stream)


def priority(stream, depends_on=0, weight=15, exclusive=False):
    f = PriorityFrame(stream or 1, depends_on=depends_on, stream_weight=weight, exclusive=exclusive)
    return _on_stream(f, stream)


def rst_stream(stream, code):
    return RstStreamFrame(stream, error_code=code).serialize()


def ping(payload=b"\0" * 8, ack=False):
    f = PingFrame(0, opaque_data=payload)
    if ack:
        f.flags.add("ACK")
    return f.serialize()


def goaway(last_stream=0, code=NO_ERROR):
    return GoAwayFrame(0, last_stream_id=last_stream, error_code=code).serialize()


def window_update(stream, increment):
    """WINDOW_UPDATE with any 31-bit increment, including 0 (which hyperframe accepts to send)."""
    return frame(WINDOW_UPDATE, 0, stream, struct.pack(">I", increment & 0x7FFFFFFF))


# ---- header blocks --------------------------------------------------------------------------

def request_fields(authority, path="/", method="GET", scheme="http", extra=()):
    return [(":method", method), (":scheme", scheme), (":authority", authority),
            (":path", path), *extra]


def _string(raw, huffman_bytes=None):
    """An HPACK string literal (RFC 7541 §5.2): raw octets, or pre-encoded Huffman octets."""
    if huffman_bytes is not None:
        n = encode_integer(len(huffman_bytes), 7)
        n[0] |= 0x80
        return bytes(n) + huffman_bytes
    return bytes(encode_integer(len(raw), 7)) + raw


def lit(name, value):
    """Literal header field without indexing, new name (RFC 7541 §6.2.2), no Huffman coding.

    Written by hand so that nothing normalises the name or value on the way.
    """
    as_bytes = lambda s: s if isinstance(s, bytes) else s.encode()
    return b"\x00" + _string(as_bytes(name)) + _string(as_bytes(value))


def lit_indexed_name(index, value=None, huffman_value=None):
    """Literal without indexing whose name is table entry `index` (RFC 7541 §6.2.2)."""
    prefix = encode_integer(index, 4)
    v = value.encode() if isinstance(value, str) else value
    return bytes(prefix) + _string(v, huffman_value)


def block(fields):
    """A header block of literal fields, in exactly the order given, nothing validated."""
    return b"".join(lit(n, v) for n, v in fields)


def table_size_update(size):
    """Dynamic table size update (RFC 7541 §6.3)."""
    b = encode_integer(size, 5)
    b[0] |= 0x20
    return bytes(b)


def indexed(index):
    """Indexed header field (RFC 7541 §6.1)."""
    b = encode_integer(index, 7)
    b[0] |= 0x80
    return bytes(b)


def new_encoder():
    return Encoder()
