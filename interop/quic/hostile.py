"""Malformed requests on one QUIC connection, then a good one on the same connection (aioquic).

    python3 hostile.py --alpn hq-interop|h3 https://127.0.0.1:PORT/small EXPECTED_FILE

hq-interop: a POST line, a 9000-byte request line, a line with a control byte, an empty
stream; each must be reset (not answered) while the connection stays up, and a final GET must
return the file. h3: requests without :path, with an uppercase field name, with :authority and
Host disagreeing, and with a content-length larger than the body; each must fail on its own
stream (reset or 4xx), and a final GET must return the file. Prints one JSON line; exits 0 on
success.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
from urllib.parse import urlparse

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, StreamDataReceived, StreamReset


class Probe(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3: H3Connection | None = None
        self.outcome: dict[int, asyncio.Future] = {}
        self.body: dict[int, bytearray] = {}
        self.status: dict[int, int] = {}
        self.terminated: ConnectionTerminated | None = None

    def open(self) -> int:
        stream_id = self._quic.get_next_available_stream_id()
        self.outcome[stream_id] = self._loop.create_future()
        self.body[stream_id] = bytearray()
        return stream_id

    def _finish(self, stream_id: int, value) -> None:
        future = self.outcome.get(stream_id)
        if future is not None and not future.done():
            future.set_result(value)

    def quic_event_received(self, event) -> None:
        if isinstance(event, ConnectionTerminated):
            self.terminated = event
            for stream_id in list(self.outcome):
                self._finish(stream_id, ("connection closed", event.error_code))
            return
        if isinstance(event, StreamReset):
            self._finish(event.stream_id, ("reset", event.error_code))
            return
        if self.h3 is not None:
            for e in self.h3.handle_event(event):
                if isinstance(e, HeadersReceived):
                    for k, v in e.headers:
                        if k == b":status":
                            self.status[e.stream_id] = int(v)
                    if e.stream_ended:
                        self._finish(e.stream_id, ("status", self.status.get(e.stream_id)))
                elif isinstance(e, DataReceived):
                    if e.stream_id in self.body:
                        self.body[e.stream_id] += e.data
                    if e.stream_ended:
                        self._finish(e.stream_id, ("status", self.status.get(e.stream_id)))
        elif isinstance(event, StreamDataReceived):
            if event.stream_id in self.body:
                self.body[event.stream_id] += event.data
            if event.end_stream:
                self._finish(event.stream_id, ("data", len(self.body[event.stream_id])))


async def run(args) -> dict:
    url = urlparse(args.url)
    config = QuicConfiguration(
        is_client=True,
        alpn_protocols=H3_ALPN if args.alpn == "h3" else ["hq-interop"],
        verify_mode=ssl.CERT_NONE,
        server_name="localhost",
    )
    expected = open(args.expected, "rb").read()
    report = {"cases": {}}
    async with connect(url.hostname, url.port, configuration=config, create_protocol=Probe) as p:
        quic = p._quic
        cases: list[tuple[str, int]] = []
        if args.alpn == "hq-interop":
            for name, payload in [
                ("post", b"POST /small\r\n"),
                ("overlong", b"GET /" + b"a" * 9000 + b"\r\n"),
                ("control-byte", b"GET /sm\x01all\r\n"),
                ("empty", b""),
            ]:
                sid = p.open()
                quic.send_stream_data(sid, payload, end_stream=True)
                cases.append((name, sid))
            good = p.open()
            quic.send_stream_data(good, f"GET {url.path}\r\n".encode(), end_stream=True)
        else:
            p.h3 = H3Connection(quic)
            authority = url.netloc.encode()
            base = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", authority)]
            for name, headers, body in [
                ("no-path", base, None),
                ("uppercase-field", base + [(b":path", url.path.encode()), (b"X-Upper", b"1")], None),
                ("host-mismatch", base + [(b":path", url.path.encode()), (b"host", b"elsewhere")], None),
                (
                    "short-body",
                    [(b":method", b"POST"), (b":scheme", b"https"), (b":authority", authority),
                     (b":path", url.path.encode()), (b"content-length", b"10")],
                    b"abc",
                ),
            ]:
                sid = p.open()
                p.h3.send_headers(sid, headers, end_stream=body is None)
                if body is not None:
                    p.h3.send_data(sid, body, end_stream=True)
                cases.append((name, sid))
            good = p.open()
            p.h3.send_headers(good, base + [(b":path", url.path.encode())], end_stream=True)
        p.transmit()
        for name, sid in cases:
            try:
                kind, value = await asyncio.wait_for(p.outcome[sid], 10)
            except asyncio.TimeoutError:
                kind, value = "no answer", None
            # Refused means: reset, or an error status; never served, never the connection.
            refused = kind == "reset" or (kind == "status" and value is not None and value >= 400)
            report["cases"][name] = {"outcome": kind, "value": value, "refused": refused}
        kind, value = await asyncio.wait_for(p.outcome[good], 10)
        report["good"] = {"outcome": kind, "value": value, "same": bytes(p.body[good]) == expected}
        report["connection_closed"] = p.terminated is not None
    report["ok"] = (
        all(c["refused"] for c in report["cases"].values())
        and report["good"]["same"]
        and not report["connection_closed"]
    )
    return report


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("expected")
    parser.add_argument("--alpn", default="hq-interop", choices=["hq-interop", "h3"])
    args = parser.parse_args()
    try:
        report = asyncio.run(run(args))
    except Exception as e:
        print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}))
        return 1
    print(json.dumps(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
