"""HTTP/3 conformance cases (RFC 9114, RFC 9204) against a running server, over aioquic's QUIC.

    python3 h3_conformance.py https://127.0.0.1:PORT/small EXPECTED_FILE [--large /PATH]

aioquic carries the QUIC packets; every HTTP/3 byte (stream types, frames, field sections) is
written here, so the cases can break the rules a real HTTP/3 library never breaks. Field sections
are encoded with pylsqpack (aioquic's QPACK library), or by hand where they must be invalid.

Each case runs on a connection of its own and expects one exact outcome:
  conn CODE     the server closes the connection with this application error code;
  stream CODE   the server resets this request stream with this code, and a GET on the same
                connection is still answered with the file;
  status N      the request is answered with this status;
  served        unknown frame and stream types are ignored: the GET is answered with the file;
  first N       RFC 9218 (with --large, a resource of 1 MiB or more): two requests for it sent
                together, with priorities; request N (0 or 1) must end before the other has 3/4
                of its body. (Sharing the bandwidth, the other would have about all of it; a
                response the server began before it read the urgent request keeps what it sent,
                up to some hundreds of KiB on loopback.)
Prints one line per case and a summary; exits 0 when every case has its outcome.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
from urllib.parse import urlparse

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, StreamDataReceived, StreamReset
from pylsqpack import Decoder, Encoder

# RFC 9114 §8.1, RFC 9204 §6.
H3_STREAM_CREATION_ERROR = 0x103
H3_CLOSED_CRITICAL_STREAM = 0x104
H3_FRAME_UNEXPECTED = 0x105
H3_FRAME_ERROR = 0x106
H3_ID_ERROR = 0x108
H3_SETTINGS_ERROR = 0x109
H3_MISSING_SETTINGS = 0x10A
H3_REQUEST_INCOMPLETE = 0x10D
H3_MESSAGE_ERROR = 0x10E
QPACK_DECOMPRESSION_FAILED = 0x200
QPACK_ENCODER_STREAM_ERROR = 0x201
QPACK_DECODER_STREAM_ERROR = 0x202

DATA, HEADERS, CANCEL_PUSH, SETTINGS, GOAWAY, MAX_PUSH_ID = 0x0, 0x1, 0x3, 0x4, 0x7, 0xD
PRIORITY_UPDATE, PRIORITY_UPDATE_PUSH = 0xF0700, 0xF0701  # RFC 9218 §7.2
GREASE_FRAME = 0x1F * 3 + 0x21
WAIT = 10.0


def varint(n: int) -> bytes:
    if n < 1 << 6:
        return bytes([n])
    if n < 1 << 14:
        return (0x4000 | n).to_bytes(2, "big")
    if n < 1 << 30:
        return (0x80000000 | n).to_bytes(4, "big")
    return (0xC000000000000000 | n).to_bytes(8, "big")


def prefixed(flags: int, prefix: int, n: int) -> bytes:
    """RFC 7541 §5.1 (RFC 9204 §4.1.1): an integer with an N-bit prefix."""
    mask = (1 << prefix) - 1
    if n < mask:
        return bytes([flags | n])
    out, n = bytearray([flags | mask]), n - mask
    while n >= 128:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    out.append(n)
    return bytes(out)


def frame(kind: int, payload: bytes = b"") -> bytes:
    return varint(kind) + varint(len(payload)) + payload


def settings(*pairs: tuple[int, int]) -> bytes:
    return frame(SETTINGS, b"".join(varint(i) + varint(v) for i, v in pairs))


def read_varint(data: bytes, at: int) -> tuple[int, int]:
    first = data[at]
    length = 1 << (first >> 6)
    value = first & 0x3F
    for b in data[at + 1 : at + length]:
        value = (value << 8) | b
    return value, at + length


def frames(data: bytes) -> list[tuple[int, bytes]]:
    out, at = [], 0
    while at < len(data):
        kind, at = read_varint(data, at)
        length, at = read_varint(data, at)
        out.append((kind, data[at : at + length]))
        at += length
    return out


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.received: dict[int, bytearray] = {}
        self.ended: set[int] = set()
        self.resets: dict[int, int] = {}
        self.terminated: ConnectionTerminated | None = None
        # For each stream that ended: how many octets every stream had received by then.
        self.at_end: dict[int, dict[int, int]] = {}
        self.changed = asyncio.Event()
        self.encoder = Encoder()
        self.decoder = Decoder(0, 0)

    def quic_event_received(self, event) -> None:
        if isinstance(event, StreamDataReceived):
            self.received.setdefault(event.stream_id, bytearray()).extend(event.data)
            if event.end_stream:
                self.ended.add(event.stream_id)
                self.at_end[event.stream_id] = {k: len(v) for k, v in self.received.items()}
        elif isinstance(event, StreamReset):
            self.resets[event.stream_id] = event.error_code
        elif isinstance(event, ConnectionTerminated):
            self.terminated = event
        self.changed.set()

    async def until(self, done) -> bool:
        """Wait until `done()` holds or the connection ends; False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while not done():
            if self.terminated is not None:
                return bool(done())
            self.changed.clear()
            left = deadline - loop.time()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except asyncio.TimeoutError:
                return False
        return True

    def uni(self, data: bytes, end: bool = False) -> int:
        sid = self._quic.get_next_available_stream_id(is_unidirectional=True)
        self._quic.send_stream_data(sid, data, end_stream=end)
        self.transmit()
        return sid

    def bidi(self, data: bytes, end: bool = True) -> int:
        sid = self._quic.get_next_available_stream_id()
        self._quic.send_stream_data(sid, data, end_stream=end)
        self.transmit()
        return sid

    def send(self, sid: int, data: bytes, end: bool = False) -> None:
        self._quic.send_stream_data(sid, data, end_stream=end)
        self.transmit()

    def section(self, sid: int, headers: list[tuple[bytes, bytes]]) -> bytes:
        _, block = self.encoder.encode(sid, headers)
        return block

    def head(self, sid: int) -> list[tuple[bytes, bytes]]:
        for kind, payload in frames(bytes(self.received.get(sid, b""))):
            if kind == HEADERS:
                return self.decoder.feed_header(sid, payload)[1]
        return []

    def response(self, sid: int) -> tuple[int | None, bytes]:
        status, body = None, bytearray()
        for kind, payload in frames(bytes(self.received.get(sid, b""))):
            if kind == HEADERS and status is None:
                _, fields = self.decoder.feed_header(sid, payload)
                status = int(dict(fields)[b":status"])
            elif kind == DATA:
                body += payload
        return status, bytes(body)


class Case:
    def __init__(self, name, expect, act):
        self.name, self.expect, self.act = name, expect, act


def request_headers(authority: bytes, path: bytes, method: bytes = b"GET", extra=()):
    return [(b":method", method), (b":scheme", b"https"), (b":authority", authority),
            (b":path", path), *extra]


def cases(authority: bytes, path: bytes, large: bytes | None = None) -> list[Case]:
    def headers_frame(c: Client, sid: int, fields) -> bytes:
        return frame(HEADERS, c.section(sid, fields))

    def next_bidi(c: Client) -> int:
        return c._quic.get_next_available_stream_id()

    def request(c: Client, extra=(), method=b"GET", end=True, more=b"") -> int:
        sid = next_bidi(c)
        c.send(sid, headers_frame(c, sid, request_headers(authority, path, method, extra)) + more, end)
        return sid

    def control(c: Client, data: bytes, end: bool = False) -> int:
        return c.uni(varint(0x00) + data, end)

    good_settings = settings((0x6, 65536))

    out = [
        # §4.1: invalid frame sequences on a request stream.
        Case("DATA before HEADERS", ("conn", H3_FRAME_UNEXPECTED),
             lambda c: c.bidi(frame(DATA, b"x"))),
        Case("HEADERS after trailers", ("conn", H3_FRAME_UNEXPECTED),
             lambda c: request(c, more=frame(HEADERS, b"\x00\x00") + frame(HEADERS, b"\x00\x00"))),
        Case("DATA after trailers", ("conn", H3_FRAME_UNEXPECTED),
             lambda c: request(c, more=frame(HEADERS, b"\x00\x00") + frame(DATA, b"x"))),
        # §7.2.4, §7.2.6, §7.2.7: control frames belong on the control stream.
        Case("SETTINGS on a request stream", ("conn", H3_FRAME_UNEXPECTED),
             lambda c: request(c, end=False, more=good_settings)),
        Case("GOAWAY on a request stream", ("conn", H3_FRAME_UNEXPECTED),
             lambda c: c.bidi(frame(GOAWAY, varint(0)))),
        # §7.2.8: HTTP/2 frame types are errors.
        Case("HTTP/2 PING frame type on a request stream", ("conn", H3_FRAME_UNEXPECTED),
             lambda c: request(c, end=False, more=frame(0x6, b"12345678"))),
        Case("HTTP/2 WINDOW_UPDATE frame type on the control stream", ("conn", H3_FRAME_UNEXPECTED),
             lambda c: control(c, good_settings + frame(0x8, varint(1)))),
        # §7.1: a frame cut by the end of its stream.
        Case("stream ends inside a frame", ("conn", H3_FRAME_ERROR),
             lambda c: c.bidi(varint(HEADERS) + varint(40) + b"\x00\x00\xd1")),
        # §6.2.1, §7.2.4: the control stream.
        Case("control stream without SETTINGS first", ("conn", H3_MISSING_SETTINGS),
             lambda c: control(c, frame(MAX_PUSH_ID, varint(0)))),
        Case("second SETTINGS", ("conn", H3_FRAME_UNEXPECTED),
             lambda c: control(c, good_settings + good_settings)),
        Case("HTTP/2 setting (ENABLE_PUSH) in SETTINGS", ("conn", H3_SETTINGS_ERROR),
             lambda c: control(c, settings((0x2, 0)))),
        Case("setting repeated", ("conn", H3_SETTINGS_ERROR),
             lambda c: control(c, settings((0x6, 100), (0x6, 200)))),
        Case("malformed SETTINGS payload", ("conn", H3_FRAME_ERROR),
             lambda c: control(c, frame(SETTINGS, varint(0x6)))),
        Case("control stream closed", ("conn", H3_CLOSED_CRITICAL_STREAM),
             lambda c: control(c, good_settings, end=True)),
        Case("second control stream", ("conn", H3_STREAM_CREATION_ERROR),
             lambda c: (control(c, good_settings), control(c, good_settings))),
        Case("client-initiated push stream", ("conn", H3_STREAM_CREATION_ERROR),
             lambda c: c.uni(varint(0x01) + varint(0))),
        Case("CANCEL_PUSH of a push never promised", ("conn", H3_ID_ERROR),
             lambda c: control(c, good_settings + frame(CANCEL_PUSH, varint(0)))),
        Case("MAX_PUSH_ID reduced", ("conn", H3_ID_ERROR),
             lambda c: control(c, good_settings + frame(MAX_PUSH_ID, varint(8))
                               + frame(MAX_PUSH_ID, varint(4)))),
        # RFC 9204: the server's table capacity is 0.
        Case("field section refers to the dynamic table", ("conn", QPACK_DECOMPRESSION_FAILED),
             lambda c: c.bidi(frame(HEADERS, b"\x02\x00\x80"))),
        Case("post-base reference", ("conn", QPACK_DECOMPRESSION_FAILED),
             lambda c: c.bidi(frame(HEADERS, b"\x00\x00\x10"))),
        Case("static index past the table", ("conn", QPACK_DECOMPRESSION_FAILED),
             lambda c: c.bidi(frame(HEADERS, b"\x00\x00\xff\x24"))),
        Case("bad Huffman string", ("conn", QPACK_DECOMPRESSION_FAILED),
             lambda c: c.bidi(frame(HEADERS, b"\x00\x00\x51\x84\xff\xff\xff\xff"))),
        Case("insertion on the QPACK encoder stream", ("conn", QPACK_ENCODER_STREAM_ERROR),
             lambda c: c.uni(varint(0x02) + b"\x3f\xe1\x1f")),
        Case("section acknowledgment on the QPACK decoder stream", ("conn", QPACK_DECODER_STREAM_ERROR),
             lambda c: c.uni(varint(0x03) + b"\x80")),
        Case("second QPACK encoder stream", ("conn", H3_STREAM_CREATION_ERROR),
             lambda c: (c.uni(varint(0x02)), c.uni(varint(0x02)))),
        # §4.1.2, §4.2, §4.3: malformed requests are stream errors.
        Case("request stream ends without a head", ("stream", H3_REQUEST_INCOMPLETE),
             lambda c: c.bidi(frame(GREASE_FRAME, b"x"))),
        Case("uppercase field name", ("stream", H3_MESSAGE_ERROR),
             lambda c: request(c, extra=[(b"X-Upper", b"1")])),
        Case("pseudo-header after a regular field", ("stream", H3_MESSAGE_ERROR),
             lambda c: (lambda sid: c.send(sid, frame(HEADERS, c.section(sid, [
                 (b":method", b"GET"), (b":scheme", b"https"), (b"accept", b"*/*"),
                 (b":path", path), (b":authority", authority)])), True))(next_bidi(c))),
        Case("missing :path", ("stream", H3_MESSAGE_ERROR),
             lambda c: (lambda sid: c.send(sid, frame(HEADERS, c.section(sid, [
                 (b":method", b"GET"), (b":scheme", b"https"), (b":authority", authority)])), True))(next_bidi(c))),
        Case("unknown pseudo-header", ("stream", H3_MESSAGE_ERROR),
             lambda c: request(c, extra=[(b":protocol-x", b"1")])),
        Case("connection-specific field", ("stream", H3_MESSAGE_ERROR),
             lambda c: request(c, extra=[(b"connection", b"keep-alive")])),
        Case("TE other than trailers", ("stream", H3_MESSAGE_ERROR),
             lambda c: request(c, extra=[(b"te", b"gzip")])),
        Case("content-length above the body", ("stream", H3_MESSAGE_ERROR),
             lambda c: request(c, method=b"POST", extra=[(b"content-length", b"10")],
                               more=frame(DATA, b"abc"))),
        Case("content-length below the body", ("stream", H3_MESSAGE_ERROR),
             lambda c: request(c, method=b"POST", extra=[(b"content-length", b"1")],
                               more=frame(DATA, b"abc"))),
        Case("pseudo-header in trailers", ("stream", H3_MESSAGE_ERROR),
             lambda c: (lambda sid: c.send(sid, frame(HEADERS, c.section(sid, request_headers(authority, path, b"POST")))
                                           + frame(DATA, b"abc")
                                           + frame(HEADERS, c.section(sid, [(b":path", b"/")])), True))(next_bidi(c))),
        # §4.3.1: ":path" is "*" for a server-wide OPTIONS, and origin form otherwise.
        Case("OPTIONS with :path *", ("status", 200),
             lambda c: (lambda sid: c.send(sid, headers_frame(c, sid, request_headers(authority, b"*", b"OPTIONS")),
                                           True))(next_bidi(c))),
        Case("GET with :path *", ("status", 400),
             lambda c: (lambda sid: c.send(sid, headers_frame(c, sid, request_headers(authority, b"*")),
                                           True))(next_bidi(c))),
        # §4.2.2: a head over SETTINGS_MAX_FIELD_SECTION_SIZE is answered 431.
        Case("fields over the field section limit", ("status", 431),
             lambda c: request(c, extra=[(b"x-big-%d" % i, b"a" * 2000) for i in range(40)])),
        Case("HEADERS frame over the field section limit", ("status", 431),
             lambda c: c.bidi(frame(HEADERS, b"\x00\x00\xd1\xd7\x25x-big"
                                    + prefixed(0x00, 7, 70000) + b"a" * 70000))),
        # §4.2.2: "An implementation that has received this parameter SHOULD NOT send an HTTP
        # message header that exceeds the indicated size." 300 octets cannot hold the file's head.
        Case("response head within the client's field section limit", ("head within", 300),
             lambda c: (control(c, settings((0x6, 300))), request(c))),
        # RFC 9218 §7.2: PRIORITY_UPDATE belongs on the control stream, names a request stream
        # (or a push within MAX_PUSH_ID), and may come before the request it names.
        Case("PRIORITY_UPDATE on a request stream", ("conn", H3_FRAME_UNEXPECTED),
             lambda c: request(c, end=False, more=frame(PRIORITY_UPDATE, varint(0) + b"u=1"))),
        Case("PRIORITY_UPDATE for a unidirectional stream", ("conn", H3_ID_ERROR),
             lambda c: control(c, good_settings + frame(PRIORITY_UPDATE, varint(2) + b"u=1"))),
        Case("PRIORITY_UPDATE for a push beyond MAX_PUSH_ID", ("conn", H3_ID_ERROR),
             lambda c: control(c, good_settings + frame(PRIORITY_UPDATE_PUSH, varint(0) + b"u=1"))),
        Case("PRIORITY_UPDATE without an element ID", ("conn", H3_FRAME_ERROR),
             lambda c: control(c, good_settings + frame(PRIORITY_UPDATE, b""))),
        Case("PRIORITY_UPDATE for a request not yet sent, then the request", ("status", 200),
             lambda c: (control(c, good_settings + frame(PRIORITY_UPDATE, varint(next_bidi(c)) + b"u=6, i")),
                        request(c, extra=[(b"priority", b"u=0")]))),
        # §9, §6.2, §7.2.8: what a server must ignore.
        Case("unknown frame types and settings are ignored", ("served",),
             lambda c: (control(c, settings((0x6, 65536), (0x1F * 5 + 0x21, 7)) + frame(GREASE_FRAME, b"abc")),
                        c.uni(varint(0x1F * 2 + 0x21) + b"anything"),
                        c.uni(varint(0x02) + b"\x20"), c.uni(varint(0x03) + b"\x44"))),
    ]
    if large is not None:
        def pair(first: bytes | None, second: bytes | None, update: bytes | None = None):
            def act(c: Client):
                sids = []
                for value in (first, second):
                    sid = next_bidi(c)
                    extra = [(b"priority", value)] if value is not None else []
                    fields = request_headers(authority, large, extra=extra)
                    c._quic.send_stream_data(sid, headers_frame(c, sid, fields), end_stream=True)
                    sids.append(sid)
                if update is not None:
                    c._quic.send_stream_data(c._quic.get_next_available_stream_id(is_unidirectional=True),
                                             varint(0x00) + good_settings
                                             + frame(PRIORITY_UPDATE, varint(sids[1]) + update))
                c.transmit()  # one flight: the server reads both requests together
            return act
        # RFC 9218 §10: the more urgent response first, whatever the request order.
        out += [
            Case("u=0 is served before u=7 requested first", ("first", 1),
                 pair(b"u=7", b"u=0")),
            Case("PRIORITY_UPDATE makes the second request the more urgent", ("first", 1),
                 pair(b"u=2", b"u=4", update=b"u=0")),
        ]
    return out


def request_on(c: Client, authority: bytes, path: bytes) -> int:
    """A GET for `path` on a new request stream; returns its id."""
    sid = c._quic.get_next_available_stream_id()
    c.send(sid, frame(HEADERS, c.section(sid, request_headers(authority, path))), True)
    return sid


async def run_case(case: Case, host: str, port: int, authority: bytes, path: bytes,
                   expected: bytes) -> tuple[bool, str]:
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN,
                               verify_mode=ssl.CERT_NONE, server_name="localhost")
    async with connect(host, port, configuration=config, create_protocol=Client) as c:
        before = c._quic.get_next_available_stream_id()
        case.act(c)
        kind = case.expect[0]
        if kind == "conn":
            await c.until(lambda: c.terminated is not None)
            got = c.terminated.error_code if c.terminated else None
            return got == case.expect[1], f"connection closed with {hex(got) if got is not None else 'nothing'}"
        sid = before
        if kind == "stream":
            await c.until(lambda: sid in c.resets or sid in c.ended)
            if sid not in c.resets:
                return False, f"stream not reset (answered {c.response(sid)[0]})"
            if c.resets[sid] != case.expect[1]:
                return False, f"stream reset with {hex(c.resets[sid])}"
        elif kind == "head within":
            # The SETTINGS travel on their own stream: the first answer may predate them. The
            # second request is sent after the first answer arrived, when they have been read.
            await c.until(lambda: sid in c.ended or sid in c.resets)
            second = request_on(c, authority, path)
            await c.until(lambda: second in c.ended or second in c.resets)
            fields = c.head(second)
            size = sum(len(n) + len(v) + 32 for n, v in fields)
            status = dict(fields).get(b":status", b"none").decode()
            ok = bool(fields) and size <= case.expect[1]
            return ok, f"second answer {status} with a head of {size} octets"
        elif kind == "first":
            a, b = before, before + 4
            await c.until(lambda: {a, b} <= c.ended or bool(c.resets))
            if not {a, b} <= c.ended:
                return False, f"responses not complete (resets {c.resets})"
            # The one that ended while the other was still incomplete.
            done = a if c.at_end[a].get(b, 0) < len(c.received[b]) else b
            other = b if done == a else a
            had, full = c.at_end[done].get(other, 0), len(c.received[other])
            detail = f"stream {done} ended first, stream {other} then had {had} of {full} octets"
            if done != (a, b)[case.expect[1]] or had * 4 >= full * 3:
                return False, detail
            return True, detail
        elif kind == "status":
            await c.until(lambda: sid in c.ended or sid in c.resets)
            status, _ = c.response(sid)
            if status != case.expect[1]:
                return False, f"answered {status}, reset {c.resets.get(sid)}"
        # The connection still serves a GET.
        good = request_on(c, authority, path)
        await c.until(lambda: good in c.ended or good in c.resets)
        status, body = c.response(good)
        if c.terminated is not None:
            return False, f"connection closed with {hex(c.terminated.error_code)}"
        if status != 200 or body != expected:
            return False, f"next GET answered {status} with {len(body)} bytes"
        return True, "then a GET on the connection is served"


async def main_async(args) -> int:
    url = urlparse(args.url)
    authority, path = url.netloc.encode(), url.path.encode()
    expected = open(args.expected, "rb").read()
    passed = failed = 0
    large = args.large.encode() if args.large else None
    for case in cases(authority, path, large):
        try:
            ok, detail = await asyncio.wait_for(
                run_case(case, url.hostname, url.port, authority, path, expected), 30)
        except Exception as e:  # a case that breaks the client is a failure, not a crash
            ok, detail = False, f"{type(e).__name__}: {e}"
        decimal = case.expect[0] in ("status", "head within", "first")
        want = " ".join(hex(x) if isinstance(x, int) and not decimal else str(x)
                        for x in case.expect)
        print(f"{'PASS' if ok else 'FAIL'}  {case.name:55} expect {want:14} {detail}")
        passed += ok
        failed += not ok
    print(f"h3 conformance: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("expected")
    parser.add_argument("--large", help="path of a resource of 1 MiB or more, for RFC 9218 cases")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
