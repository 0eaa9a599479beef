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
    # One receive buffer, filled with recv_into and read through a memoryview: no allocation
    # per read, and a message is only ever copied by the kernel (the sink must not be what
    # limits the measured throughput).
    buf = bytearray(8 << 20)
    view = memoryview(buf)
    start = end = 0

    def fill(n):
        nonlocal start, end
        if end - start >= n:
            return
        if start + n > len(buf):
            view[: end - start] = view[start:end]
            start, end = 0, end - start
        while end - start < n:
            got = s.recv_into(view[end:])
            if not got:
                raise SystemExit("seeder closed the connection")
            end += got

    fill(68)
    if bytes(buf[start + 28 : start + 48]) != info_hash:
        raise SystemExit("wrong info-hash in the handshake")
    start += 68
    s.sendall(struct.pack(">IB", 1, 2))  # interested

    def message():
        """The next message: its id (None for keep-alive), length and up to 9 bytes of it."""
        nonlocal start
        fill(4)
        (n,) = struct.unpack_from(">I", buf, start)
        fill(4 + n)
        ident = buf[start + 4] if n else None
        head = bytes(buf[start + 4 : start + 4 + min(n, 9)])
        start += 4 + n
        return ident, n, head

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
