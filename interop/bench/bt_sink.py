#!/usr/bin/env python3
"""A raw peer-wire download sink for the BitTorrent benchmark: the seeder's own throughput,
without a client's piece hashing and disk writes in the way.

  bt_sink.py HOST:PORT INFO_HASH_HEX LENGTH PIECE_LENGTH [DEPTH]

Handshakes (BEP 3, plain), sends interested, waits for unchoke, keeps DEPTH (default 500)
16 KiB requests outstanding until every block of the torrent has arrived, and prints the
throughput in bytes/s (payload over the time from the first request to the last block).
Checks every block's index, offset and length; the bytes themselves are not verified.
"""

import socket
import struct
import sys
import time

BLOCK = 16384


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    info_hash = bytes.fromhex(sys.argv[2])
    length = int(sys.argv[3])
    piece_length = int(sys.argv[4])
    depth = int(sys.argv[5]) if len(sys.argv) > 5 else 500

    blocks = []
    for offset in range(0, length, BLOCK):
        index, begin = divmod(offset, piece_length)
        blocks.append((index, begin, min(BLOCK, length - offset, piece_length - begin)))

    s = socket.create_connection((host, int(port)))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(b"\x13BitTorrent protocol" + bytes(8) + info_hash + b"-SK0001-benchsink001")
    buf = bytearray()

    def fill(n):
        while len(buf) < n:
            chunk = s.recv(4 << 20)
            if not chunk:
                raise SystemExit("seeder closed the connection")
            buf.extend(chunk)

    fill(68)
    if bytes(buf[28:48]) != info_hash:
        raise SystemExit("wrong info-hash in the handshake")
    del buf[:68]
    s.sendall(struct.pack(">IB", 1, 2))  # interested

    def message():
        fill(4)
        (n,) = struct.unpack_from(">I", buf)
        fill(4 + n)
        msg = bytes(buf[4 : 4 + 9]) if n else b""
        ident = buf[4] if n else None
        del buf[: 4 + n]
        return ident, n, msg

    while True:
        ident, _, _ = message()
        if ident == 1:  # unchoke
            break

    expected = {}
    nxt = 0
    started = time.perf_counter()
    received = 0

    def request_more():
        nonlocal nxt
        out = bytearray()
        while nxt < len(blocks) and len(expected) < depth:
            index, begin, size = blocks[nxt]
            expected[(index, begin)] = size
            out += struct.pack(">IBIII", 13, 6, index, begin, size)
            nxt += 1
        if out:
            s.sendall(out)

    request_more()
    while expected:
        ident, n, head = message()
        if ident != 7:
            continue
        index, begin = struct.unpack_from(">II", head, 1)
        size = expected.pop((index, begin), None)
        if size is None or size != n - 9:
            raise SystemExit(f"unexpected block {index}:{begin} of {n - 9} bytes")
        received += size
        if len(expected) < depth // 2:
            request_more()
    elapsed = time.perf_counter() - started
    s.close()
    print(int(received / elapsed))


if __name__ == "__main__":
    main()
