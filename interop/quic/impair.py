"""A user-space UDP impairment proxy for the QUIC harness (there is no netem here).

    python3 impair.py --listen 127.0.0.1:0 --server 127.0.0.1:PORT \
        [--loss 0.02] [--corrupt 0.01] [--delay-ms 10] [--blackhole BYTES:SECONDS] [--seed N]

Every client address gets its own upstream socket (like a NAT), so the server sees one
4-tuple per client. Each datagram, in both directions, is independently dropped with
probability --loss, has one random byte flipped with probability --corrupt, and is
delivered after --delay-ms (order kept). Once BYTES have been forwarded, every datagram is
dropped for SECONDS (a blackhole in the middle of a transfer). Prints `proxy on HOST:PORT` once ready, and on exit
(SIGTERM/SIGINT) one line of counters.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import socket
import sys
import time


def parse_addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


class Impairment:
    def __init__(self, args: argparse.Namespace):
        self.loss = args.loss
        self.corrupt = args.corrupt
        self.delay = args.delay_ms / 1000
        self.blackhole = args.blackhole
        self.rng = random.Random(args.seed)
        self.forwarded_bytes = 0
        self.hole_until = None
        self.counts = {"forwarded": 0, "dropped": 0, "corrupted": 0, "blackholed": 0}

    def apply(self, data: bytes) -> bytes | None:
        """What to deliver of `data`, or None to drop it."""
        if self.blackhole:
            after, seconds = self.blackhole
            now = time.monotonic()
            if self.hole_until is None and self.forwarded_bytes >= after:
                self.hole_until = now + seconds
            if self.hole_until is not None and now < self.hole_until:
                self.counts["blackholed"] += 1
                return None
        if self.rng.random() < self.loss:
            self.counts["dropped"] += 1
            return None
        if data and self.rng.random() < self.corrupt:
            i = self.rng.randrange(len(data))
            data = data[:i] + bytes([data[i] ^ (1 + self.rng.randrange(255))]) + data[i + 1 :]
            self.counts["corrupted"] += 1
        self.counts["forwarded"] += 1
        self.forwarded_bytes += len(data)
        return data


class Proxy:
    def __init__(self, loop, listen, server, impair: Impairment):
        self.loop = loop
        self.server = server
        self.impair = impair
        family = socket.AF_INET6 if ":" in listen[0] else socket.AF_INET
        self.front = socket.socket(family, socket.SOCK_DGRAM)
        self.front.bind(listen)
        self.front.setblocking(False)
        self.upstreams: dict[tuple, socket.socket] = {}
        loop.add_reader(self.front, self.from_client)

    def send_later(self, sock: socket.socket, data: bytes, addr) -> None:
        data = self.impair.apply(data)
        if data is None:
            return
        if self.impair.delay:
            self.loop.call_later(self.impair.delay, self._send, sock, data, addr)
        else:
            self._send(sock, data, addr)

    @staticmethod
    def _send(sock, data, addr) -> None:
        try:
            sock.sendto(data, addr)
        except OSError:
            pass

    def from_client(self) -> None:
        while True:
            try:
                data, client = self.front.recvfrom(65535)
            except BlockingIOError:
                return
            up = self.upstreams.get(client)
            if up is None:
                family = socket.AF_INET6 if ":" in self.server[0] else socket.AF_INET
                up = socket.socket(family, socket.SOCK_DGRAM)
                up.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
                up.setblocking(False)
                self.upstreams[client] = up
                self.loop.add_reader(up, self.from_server, up, client)
            self.send_later(up, data, self.server)

    def from_server(self, up: socket.socket, client) -> None:
        while True:
            try:
                data, _ = up.recvfrom(65535)
            except BlockingIOError:
                return
            self.send_later(self.front, data, client)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--listen", default="127.0.0.1:0")
    p.add_argument("--server", required=True)
    p.add_argument("--loss", type=float, default=0.0)
    p.add_argument("--corrupt", type=float, default=0.0)
    p.add_argument("--delay-ms", type=float, default=0.0)
    p.add_argument("--blackhole", type=lambda s: tuple(float(x) for x in s.split(":")))
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()

    loop = asyncio.new_event_loop()
    impair = Impairment(args)
    proxy = Proxy(loop, parse_addr(args.listen), parse_addr(args.server), impair)
    host, port = proxy.front.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"proxy on {shown}:{port}", flush=True)
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    loop.run_until_complete(stop)
    print("proxy " + " ".join(f"{k}={v}" for k, v in impair.counts.items()), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
