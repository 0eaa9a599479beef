"""One client connection under test, and the outcomes a case can expect of it.

A `Conn` owns a socket (plain or TLS with ALPN h2), sends whatever bytes a case hands it and
reads frames with a deadline. Received frames are parsed with hyperframe; the server's header
blocks are decoded with one hpack Decoder per connection, in order, as HPACK requires. The
server's SETTINGS are acknowledged as they arrive (RFC 9113 §6.5.3), everything else is left to
the case.

The `expect_*` methods read until the outcome is decided, return an `Outcome` (what was
expected, what was seen) or raise `Mismatch` with the same two strings.
"""

import socket
import ssl
import struct
import time

from hpack import Decoder
from hyperframe.frame import Frame

from . import wire
from .wire import error_name


class Mismatch(Exception):
    def __init__(self, expected, observed):
        super().__init__(f"expected {expected}; observed {observed}")
        self.expected = expected
        self.observed = observed


class Skip(Exception):
    """The case cannot apply to this server (said why)."""


class Outcome:
    def __init__(self, expected, observed):
        self.expected = expected
        self.observed = observed


class Closed:
    """The server closed the connection (EOF, reset, or a TLS alert)."""

    def __init__(self, how):
        self.how = how

    def describe(self):
        return f"connection closed ({self.how})"


class Rx:
    """A frame received from the server."""

    def __init__(self, ftype, flags, stream, payload, parsed):
        self.type = ftype
        self.flags = flags
        self.stream = stream
        self.payload = payload
        self.parsed = parsed  # the hyperframe Frame, None if hyperframe refused it
        self.fields = None  # decoded header list, for HEADERS once END_HEADERS is seen
        self.block_flags = flags  # flags of the HEADERS frame that opened the block

    @property
    def code(self):
        """The error code of RST_STREAM or GOAWAY."""
        if self.type == wire.RST_STREAM:
            return struct.unpack(">I", self.payload[:4])[0] if len(self.payload) >= 4 else None
        if self.type == wire.GOAWAY:
            return struct.unpack(">I", self.payload[4:8])[0] if len(self.payload) >= 8 else None
        return None

    @property
    def last_stream(self):
        return struct.unpack(">I", self.payload[:4])[0] & 0x7FFFFFFF

    def header(self, name):
        for n, v in self.fields or ():
            if n == name:
                return v
        return None

    def is_(self, ftype, stream=None):
        return self.type == ftype and (stream is None or self.stream == stream)

    def describe(self):
        name = wire.FRAME_NAMES.get(self.type, f"frame type 0x{self.type:x}")
        if self.type == wire.GOAWAY:
            debug = self.payload[8:].decode("utf-8", "replace")
            return (f"GOAWAY({error_name(self.code)}, last stream {self.last_stream}"
                    + (f", debug {debug!r})" if debug else ")"))
        if self.type == wire.RST_STREAM:
            return f"RST_STREAM(stream {self.stream}, {error_name(self.code)})"
        if self.type == wire.HEADERS:
            end = ", END_STREAM" if self.block_flags & wire.END_STREAM else ""
            return f"HEADERS(stream {self.stream}, :status {self.header(':status')}{end})"
        if self.type == wire.DATA:
            end = ", END_STREAM" if self.flags & wire.END_STREAM else ""
            return f"DATA(stream {self.stream}, {len(self.payload)} octets{end})"
        if self.type in (wire.PING, wire.SETTINGS):
            return name + (" ACK" if self.flags & wire.ACK else "")
        if self.type == wire.WINDOW_UPDATE and len(self.payload) == 4:
            inc = struct.unpack(">I", self.payload)[0] & 0x7FFFFFFF
            return f"WINDOW_UPDATE(stream {self.stream}, +{inc})"
        return f"{name}(stream {self.stream}, flags 0x{self.flags:x}, {len(self.payload)} octets)"


class Target:
    """Where and how to connect, and what to ask for."""

    def __init__(self, host, port, tls, timeout, path, large_path):
        self.host = host
        self.port = port
        self.tls = tls
        self.timeout = timeout
        self.path = path  # a resource with a non-empty body
        self.large_path = large_path  # a resource larger than 65535 octets
        self.authority = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
        self.open = []

    def connect(self):
        c = Conn(self)
        self.open.append(c)
        return c

    def close_all(self):
        for c in self.open:
            c.close()
        self.open = []


class Conn:
    def __init__(self, target):
        self.t = target
        self.timeout = target.timeout
        raw = socket.create_connection((target.host, target.port), timeout=self.timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if target.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE  # the server's certificate is self-signed
            ctx.set_alpn_protocols(["h2"])
            raw = ctx.wrap_socket(raw, server_hostname=target.host)
            if raw.selected_alpn_protocol() != "h2":
                raise Mismatch("TLS with ALPN h2", f"ALPN {raw.selected_alpn_protocol()!r}")
        self.sock = raw
        self.buf = bytearray()
        self.closed = None
        self.decoder = Decoder()
        self.decoder.max_header_list_size = 1 << 20
        self.encoder = wire.new_encoder()
        self.server_settings = {}
        self.seen = []  # descriptions of every notable frame, for the observation
        self._block = None  # (Rx of HEADERS, bytearray) while a server header block is open
        self.next_stream = 1

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # ---- sending ----------------------------------------------------------------------------

    def send(self, *chunks):
        """Send bytes; False (and the reason noted) if the server no longer takes them."""
        try:
            self.sock.sendall(b"".join(chunks))
            return True
        except (socket.timeout, TimeoutError):
            self.seen.append("send blocked (server not reading)")
            return False
        except (OSError, ssl.SSLError) as e:
            self.seen.append(f"send failed ({e.__class__.__name__})")
            return False

    def handshake(self, values=None, push=False):
        """Preface and SETTINGS; returns once the server's SETTINGS and our ACK are in."""
        v = {} if push else {wire.ENABLE_PUSH: 0}
        v.update(values or {})
        self.send(wire.PREFACE, wire.settings(v))
        got_settings = got_ack = False
        deadline = time.monotonic() + self.timeout
        while not (got_settings and got_ack):
            ev = self.read(deadline)
            if ev is None or isinstance(ev, Closed):
                what = "timeout" if ev is None else ev.describe()
                raise Mismatch("server SETTINGS and SETTINGS ACK", what)
            if ev.is_(wire.SETTINGS):
                if ev.flags & wire.ACK:
                    got_ack = True
                else:
                    got_settings = True
            elif ev.is_(wire.GOAWAY):
                raise Mismatch("server SETTINGS and SETTINGS ACK", ev.describe())
        return self

    def request(self, stream=None, path=None, method="GET", end_stream=True, extra=()):
        """A valid request, encoded by the hpack library's encoder. Returns the stream id."""
        if stream is None:
            stream = self.next_stream
        self.next_stream = max(self.next_stream, stream + 2)
        fields = wire.request_fields(self.t.authority, path or self.t.path, method,
                                     "https" if self.t.tls else "http", extra)
        self.send(wire.headers(stream, self.encoder.encode(fields), end_stream=end_stream))
        return stream

    def fields_block(self, path=None, method="GET", extra=()):
        fields = wire.request_fields(self.t.authority, path or self.t.path, method,
                                     "https" if self.t.tls else "http", extra)
        return self.encoder.encode(fields)

    def base_fields(self, path=None, method="GET"):
        return wire.request_fields(self.t.authority, path or self.t.path, method,
                                   "https" if self.t.tls else "http")

    # ---- receiving --------------------------------------------------------------------------

    def _fill(self, deadline):
        # A deadline already past still takes what is buffered (a non-blocking read).
        self.sock.settimeout(max(deadline - time.monotonic(), 0.0))
        try:
            chunk = self.sock.recv(65536)
        except (socket.timeout, TimeoutError, BlockingIOError, ssl.SSLWantReadError):
            return False
        except ssl.SSLError as e:
            self.closed = Closed(f"TLS {e.reason or e.__class__.__name__}")
            return True
        except OSError as e:
            self.closed = Closed(e.__class__.__name__)
            return True
        if not chunk:
            self.closed = Closed("EOF")
        self.buf += chunk
        return True

    def read(self, deadline):
        """The next frame, a `Closed`, or None at the deadline. Header blocks come whole."""
        while True:
            if len(self.buf) >= 9:
                length = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) >= 9 + length:
                    head, body = bytes(self.buf[:9]), bytes(self.buf[9:9 + length])
                    del self.buf[:9 + length]
                    ev = self._parse(head, body)
                    if ev is not None:
                        return ev
                    continue
            if self.closed:
                return self.closed
            if not self._fill(deadline):
                return None

    def _parse(self, head, body):
        ftype, flags = head[3], head[4]
        stream = struct.unpack(">I", head[5:9])[0] & 0x7FFFFFFF
        try:
            parsed, _ = Frame.parse_frame_header(memoryview(head))
            parsed.parse_body(memoryview(body))
        except Exception:  # the server sent something hyperframe refuses: keep it raw
            parsed = None
        rx = Rx(ftype, flags, stream, body, parsed)
        if ftype == wire.SETTINGS and not flags & wire.ACK and stream == 0:
            for i in range(0, len(body) - len(body) % 6, 6):
                k, v = struct.unpack(">HI", body[i:i + 6])
                self.server_settings[k] = v
            self.send(wire.settings(ack=True))
        if ftype in (wire.HEADERS, wire.PUSH_PROMISE):
            fragment = body
            if parsed is not None and hasattr(parsed, "data"):
                fragment = parsed.data
            self._block = (rx, bytearray(fragment))
            if flags & wire.END_HEADERS:
                return self._finish_block()
            return None
        if ftype == wire.CONTINUATION and self._block is not None:
            self._block[1].extend(body)
            if flags & wire.END_HEADERS:
                return self._finish_block()
            return None
        self._note(rx)
        return rx

    def _finish_block(self):
        rx, fragment = self._block
        self._block = None
        try:
            rx.fields = [(n, v) for n, v in self.decoder.decode(bytes(fragment), raw=False)]
        except Exception as e:
            rx.fields = [(":status", f"<undecodable header block: {e}>")]
        self._note(rx)
        return rx

    def _note(self, rx):
        if rx.type in (wire.GOAWAY, wire.RST_STREAM, wire.HEADERS):
            self.seen.append(rx.describe())

    # ---- outcomes ---------------------------------------------------------------------------

    def _deadline(self, seconds=None):
        return time.monotonic() + (self.timeout if seconds is None else seconds)

    def _trail(self):
        earlier = self.seen[-3:]
        return (" after " + ", ".join(earlier) if earlier else "")

    def expect_connection_error(self, *codes, goaway_optional=False):
        """GOAWAY with one of `codes`, then the connection closes (RFC 9113 §5.4.1).

        With `goaway_optional`, a close without GOAWAY also passes (RFC 9113 §3.4 lets a
        server omit GOAWAY after an invalid preface).
        """
        names = " or ".join(error_name(c) for c in codes)
        goaway = "GOAWAY optional" if goaway_optional else "GOAWAY"
        expected = f"connection error {names} ({goaway}, then close)"
        deadline = self._deadline()
        while True:
            ev = self.read(deadline)
            if ev is None:
                raise Mismatch(expected, "no GOAWAY and no close within "
                               f"{self.timeout:g} s" + self._trail())
            if isinstance(ev, Closed):
                if goaway_optional:
                    return Outcome(expected, ev.describe())
                raise Mismatch(expected, ev.describe() + " without GOAWAY" + self._trail())
            if ev.is_(wire.RST_STREAM) and ev.code != wire.NO_ERROR:
                raise Mismatch(expected, ev.describe() + " (a stream error)")
            if ev.is_(wire.GOAWAY):
                if ev.code not in codes:
                    raise Mismatch(expected, ev.describe())
                end = self.read(self._deadline())
                while isinstance(end, Rx):
                    end = self.read(self._deadline())
                if end is None:
                    raise Mismatch(expected, ev.describe() + ", but the connection stayed "
                                   f"open {self.timeout:g} s")
                return Outcome(expected, ev.describe() + ", then " + end.describe())

    def expect_stream_error(self, stream, *codes):
        """RST_STREAM on `stream` with one of `codes`; the connection still answers PING.

        A response (HEADERS, DATA) on the stream before the RST_STREAM is allowed: RFC 9113
        §8.1.1 lets a server answer a malformed request before resetting it.
        """
        names = " or ".join(error_name(c) for c in codes)
        expected = f"stream error {names} on stream {stream} (RST_STREAM, connection kept)"
        deadline = self._deadline()
        while True:
            ev = self.read(deadline)
            if ev is None:
                raise Mismatch(expected, f"no RST_STREAM within {self.timeout:g} s"
                               + self._trail())
            if isinstance(ev, Closed):
                raise Mismatch(expected, ev.describe() + self._trail())
            if ev.is_(wire.GOAWAY):
                raise Mismatch(expected, ev.describe() + " (a connection error)")
            if ev.is_(wire.RST_STREAM, stream):
                if ev.code not in codes:
                    raise Mismatch(expected, ev.describe())
                alive = self._ping_roundtrip()
                if alive is not True:
                    raise Mismatch(expected, ev.describe() + ", then " + alive)
                return Outcome(expected, ev.describe() + ", then PING answered")

    def expect_stream_or_connection_error(self, stream, *codes):
        """Either RST_STREAM on `stream` (connection kept) or GOAWAY, with one of `codes`.

        For the places where RFC 9113 names the error code but leaves its scope to the
        server (an oversized DATA frame, §4.2; frames on a closed stream, §5.1 "closed").
        """
        names = " or ".join(error_name(c) for c in codes)
        expected = f"{names} as a stream error on stream {stream} or a connection error"
        deadline = self._deadline()
        while True:
            ev = self.read(deadline)
            if ev is None:
                raise Mismatch(expected, f"no RST_STREAM or GOAWAY within {self.timeout:g} s"
                               + self._trail())
            if isinstance(ev, Closed):
                raise Mismatch(expected, ev.describe() + " without GOAWAY" + self._trail())
            if ev.is_(wire.GOAWAY) or ev.is_(wire.RST_STREAM, stream):
                if ev.code not in codes:
                    raise Mismatch(expected, ev.describe())
                if ev.is_(wire.GOAWAY):
                    end = self.read(self._deadline())
                    while isinstance(end, Rx):
                        end = self.read(self._deadline())
                    if end is None:
                        raise Mismatch(expected, ev.describe() + ", but the connection stayed open")
                    return Outcome(expected, ev.describe() + ", then " + end.describe())
                alive = self._ping_roundtrip()
                if alive is not True:
                    raise Mismatch(expected, ev.describe() + ", then " + alive)
                return Outcome(expected, ev.describe() + ", then PING answered")

    def _ping_roundtrip(self, payload=b"alive?!!"):
        if not self.send(wire.ping(payload)):
            return "PING could not be sent"
        deadline = self._deadline()
        while True:
            ev = self.read(deadline)
            if ev is None:
                return "no PING ACK"
            if isinstance(ev, Closed):
                return ev.describe()
            if ev.is_(wire.GOAWAY):
                return ev.describe()
            if ev.is_(wire.PING) and ev.flags & wire.ACK and ev.payload == payload:
                return True

    def expect_ping_ack(self, payload=b"h2conf!!", what="PING ACK"):
        """The connection is still usable: a PING is answered with the same payload."""
        expected = f"{what} (frame ignored, connection usable)"
        result = self._ping_roundtrip(payload)
        if result is not True:
            raise Mismatch(expected, result + self._trail())
        errors = [s for s in self.seen if s.startswith("GOAWAY")
                  or (s.startswith("RST_STREAM") and not s.endswith("NO_ERROR)"))]
        if errors:
            raise Mismatch(expected, ", ".join(errors))
        return Outcome(expected, "PING ACK with the same payload")

    def expect_response(self, stream, what=None):
        """A final response (non-1xx :status) on `stream`, no error."""
        expected = what or f"a response on stream {stream}"
        deadline = self._deadline()
        while True:
            ev = self.read(deadline)
            if ev is None:
                raise Mismatch(expected, f"no response within {self.timeout:g} s"
                               + self._trail())
            if isinstance(ev, Closed):
                raise Mismatch(expected, ev.describe() + self._trail())
            if ev.is_(wire.GOAWAY) or (ev.is_(wire.RST_STREAM, stream)):
                raise Mismatch(expected, ev.describe())
            if ev.is_(wire.HEADERS, stream):
                status = ev.header(":status") or ""
                if not status.startswith("1"):
                    return Outcome(expected, ev.describe())

    def read_until(self, predicate, what, seconds=None):
        """Frames until one satisfies `predicate`; Mismatch on close, GOAWAY or deadline."""
        deadline = self._deadline(seconds)
        while True:
            ev = self.read(deadline)
            if ev is None:
                raise Mismatch(what, "nothing within the deadline" + self._trail())
            if isinstance(ev, Closed) or ev.is_(wire.GOAWAY):
                raise Mismatch(what, ev.describe())
            if predicate(ev):
                return ev

    def complete_response(self, stream):
        """Read a whole response on `stream` (HEADERS … END_STREAM), granting window as needed."""
        what = f"a complete response on stream {stream}"
        deadline = self._deadline()
        while True:
            ev = self.read(deadline)
            if ev is None or isinstance(ev, Closed) or ev.is_(wire.GOAWAY) or \
                    ev.is_(wire.RST_STREAM, stream):
                raise Mismatch(what, "timeout" if ev is None else ev.describe())
            if ev.is_(wire.DATA, stream) and ev.payload:
                grant = [wire.window_update(0, len(ev.payload))]
                if not ev.flags & wire.END_STREAM:
                    grant.append(wire.window_update(stream, len(ev.payload)))
                self.send(*grant)
            ended = (ev.is_(wire.DATA, stream) and ev.flags & wire.END_STREAM) or \
                (ev.is_(wire.HEADERS, stream) and ev.block_flags & wire.END_STREAM)
            if ended:
                return ev
