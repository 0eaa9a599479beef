"""A QUIC client on aioquic for the local interop harness (interop/quic/run.sh).

Downloads URLs over HTTP/3 (ALPN h3) or HTTP/0.9 (ALPN hq-interop) on ONE connection, saves
each body under --out by its path's last segment, and prints one JSON line with what the
handshake showed, for the harness to check:

  {"retry": bool, "resumed": bool, "early_data": bool, "cipher": "...", "version": "0x...",
   "key_phase": 0|1, "key_updates": {"local": N, "remote": N}, "alpn": "h3",
   "statuses": {"200": N, ...}, "ok": bool}

Options mirror the interop runner's cases: --chacha20, --session FILE (read a ticket if
present, write the new one), --zero-rtt (send the requests as early data), --key-update,
--v2 (offer QUIC v2 first), --window N (small flow-control windows), --keylog FILE,
--qlog DIR.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pickle
import ssl
import sys
from collections import Counter
from urllib.parse import urlparse

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import HandshakeCompleted, QuicEvent, StreamDataReceived, StreamReset
from aioquic.quic.logger import QuicFileLogger
from aioquic.quic.packet import QuicProtocolVersion
from aioquic.quic import crypto as quic_crypto
from aioquic.tls import CipherSuite, Epoch

# Key updates seen, by trigger: "local_update" (ours) and "remote_update" (the peer's).
KEY_UPDATES: Counter = Counter()
_apply_key_phase = quic_crypto.apply_key_phase


def _counting_apply_key_phase(self, crypto, trigger):
    KEY_UPDATES[trigger] += 1
    return _apply_key_phase(self, crypto, trigger)


quic_crypto.apply_key_phase = _counting_apply_key_phase


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.alpn = None
        self.h3 = None
        self.waiters: dict[int, asyncio.Future] = {}
        self.bodies: dict[int, bytearray] = {}
        self.status: dict[int, int] = {}
        self.handshake: HandshakeCompleted | None = None
        self.announced = False

    def use_alpn(self, alpn: str) -> None:
        self.alpn = alpn
        if alpn == "h3":
            self.h3 = H3Connection(self._quic)

    def get(self, authority: str, path: str, method: str = "GET") -> asyncio.Future:
        stream_id = self._quic.get_next_available_stream_id()
        if self.h3 is not None:
            self.h3.send_headers(
                stream_id,
                [
                    (b":method", method.encode()),
                    (b":scheme", b"https"),
                    (b":authority", authority.encode()),
                    (b":path", path.encode()),
                    (b"user-agent", b"aioquic-interop"),
                ],
                end_stream=True,
            )
        else:
            self._quic.send_stream_data(stream_id, f"GET {path}\r\n".encode(), end_stream=True)
        future = self._loop.create_future()
        self.waiters[stream_id] = future
        self.bodies[stream_id] = bytearray()
        self.transmit()
        return future

    def _done(self, stream_id: int, error: str | None = None) -> None:
        future = self.waiters.pop(stream_id, None)
        if future is not None and not future.done():
            if error:
                future.set_exception(RuntimeError(error))
            else:
                future.set_result((self.status.get(stream_id, 200), bytes(self.bodies.pop(stream_id))))

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, HandshakeCompleted):
            self.handshake = event
        if isinstance(event, StreamReset):
            self._done(event.stream_id, f"stream {event.stream_id} reset ({event.error_code:#x})")
            return
        if self.h3 is not None:
            for h3_event in self.h3.handle_event(event):
                if isinstance(h3_event, HeadersReceived):
                    for name, value in h3_event.headers:
                        if name == b":status":
                            self.status[h3_event.stream_id] = int(value)
                    if h3_event.stream_ended:
                        self._done(h3_event.stream_id)
                elif isinstance(h3_event, DataReceived):
                    if h3_event.stream_id in self.bodies:
                        self.bodies[h3_event.stream_id] += h3_event.data
                        self._progress(len(self.bodies[h3_event.stream_id]))
                    if h3_event.stream_ended:
                        self._done(h3_event.stream_id)
        elif isinstance(event, StreamDataReceived):
            if event.stream_id in self.bodies:
                self.bodies[event.stream_id] += event.data
                self._progress(len(self.bodies[event.stream_id]))
            if event.end_stream:
                self._done(event.stream_id)

    def _progress(self, received: int) -> None:
        # A line on stderr once any body passes 1 MiB: a harness waits for it to act mid-download.
        if received >= 1 << 20 and not self.announced:
            self.announced = True
            print("progress: 1 MiB received", file=sys.stderr, flush=True)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("urls", nargs="+")
    p.add_argument("--alpn", default="h3", choices=["h3", "hq-interop"])
    p.add_argument("--out", help="directory to save bodies into")
    p.add_argument("--chacha20", action="store_true")
    p.add_argument("--session", help="session ticket file: read if present, written after")
    p.add_argument("--zero-rtt", action="store_true")
    p.add_argument("--key-update", action="store_true")
    p.add_argument("--v2", action="store_true")
    p.add_argument("--window", type=int, help="max_data and max_stream_data in bytes")
    p.add_argument("--keylog")
    p.add_argument("--cafile", help="verify the server's certificate against this PEM file")
    p.add_argument("--qlog")
    p.add_argument("--timeout", type=float, default=60)
    p.add_argument("--idle-timeout", type=float, default=60, help="QUIC idle timeout, seconds")
    p.add_argument("--method", default="GET", help="h3 only: method of every request")
    return p.parse_args()


async def run(args: argparse.Namespace) -> dict:
    first = urlparse(args.urls[0])
    host = first.hostname
    port = first.port or 443
    config = QuicConfiguration(
        is_client=True,
        alpn_protocols=H3_ALPN if args.alpn == "h3" else ["hq-interop"],
        verify_mode=ssl.CERT_NONE,
        server_name="localhost",
        idle_timeout=args.idle_timeout,
    )
    if args.cafile:
        config.verify_mode = ssl.CERT_REQUIRED
        config.load_verify_locations(cafile=args.cafile)
    if args.chacha20:
        config.cipher_suites = [CipherSuite.CHACHA20_POLY1305_SHA256]
    if args.window:
        config.max_data = args.window
        config.max_stream_data = args.window
    if args.v2:
        config.original_version = QuicProtocolVersion.VERSION_2
        config.supported_versions = [QuicProtocolVersion.VERSION_2, QuicProtocolVersion.VERSION_1]
    if args.keylog:
        config.secrets_log_file = open(args.keylog, "a")
    if args.qlog:
        config.quic_logger = QuicFileLogger(args.qlog)
    if args.session and os.path.exists(args.session):
        with open(args.session, "rb") as f:
            config.session_ticket = pickle.load(f)

    tickets = []

    async with connect(
        host,
        port,
        configuration=config,
        create_protocol=Client,
        session_ticket_handler=tickets.append,
        wait_connected=not args.zero_rtt,
    ) as client:
        client.use_alpn(args.alpn)
        authority = first.netloc
        if args.key_update:
            client._quic.request_key_update()
        futures = [
            client.get(authority, urlparse(url).path or "/", args.method) for url in args.urls
        ]
        results = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), args.timeout)
        if client.handshake is None:
            await asyncio.wait_for(client.wait_connected(), args.timeout)
        quic = client._quic
        statuses = Counter()
        errors = []
        for url, result in zip(args.urls, results):
            if isinstance(result, BaseException):
                errors.append(f"{url}: {result}")
                statuses["error"] += 1
                continue
            status, body = result
            statuses[str(status)] += 1
            if args.out and status == 200:
                name = os.path.basename(urlparse(url).path) or "index.html"
                with open(os.path.join(args.out, name), "wb") as f:
                    f.write(body)
        hs = client.handshake
        one_rtt = quic._cryptos[Epoch.ONE_RTT]
        report = {
            "retry": quic._retry_source_connection_id is not None,
            "resumed": bool(hs and hs.session_resumed),
            "early_data": bool(hs and hs.early_data_accepted),
            "cipher": str(one_rtt.send.cipher_suite.name) if one_rtt.send.cipher_suite else None,
            "version": hex(quic._version),
            "key_phase": one_rtt.recv.key_phase,
            # update_key() applies the new phase to both directions: halve the local count.
            "key_updates": {
                "local": KEY_UPDATES["local_update"] // 2,
                "remote": KEY_UPDATES["remote_update"],
            },
            "alpn": hs.alpn_protocol if hs else None,
            "statuses": dict(statuses),
            "errors": errors[:5],
        }
        client.close()
    if args.session and tickets:
        with open(args.session, "wb") as f:
            pickle.dump(tickets[-1], f)
    report["ok"] = not errors
    return report


def main() -> int:
    args = parse_args()
    try:
        report = asyncio.run(run(args))
    except Exception as e:  # one line the harness can print
        print(json.dumps({"ok": False, "errors": [f"{type(e).__name__}: {e}"]}))
        return 1
    print(json.dumps(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
