#!/usr/bin/env python3
"""Open many keep-alive HTTP/1.1 connections, make one request on each, then hold them idle.

Used by h1.sh to measure the server's memory with N idle connections. Plain sockets only, so
the client is small and its behaviour obvious:

  1. connect N times (sequentially), send `GET PATH` with keep-alive on each;
  2. read each response completely (Content-Length framing) and count failures;
  3. print one line `READY ok=N errors=E first_error=...` to stdout and flush;
  4. hold every connection open for --hold seconds (or until stdin closes with --hold 0),
     then check how many the server closed meanwhile and print `DONE still_open=K`.
"""

import argparse
import resource
import select
import socket
import sys
import time


def read_response(sock: socket.socket) -> int:
    """Read one response; return its status. Raises on a malformed or truncated response."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("EOF before end of head")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
        if name.strip().lower() == b"transfer-encoding":
            raise ValueError("chunked response: not expected for a static file")
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("EOF inside body")
        rest += chunk
    if len(rest) != length:
        raise ValueError("extra bytes after the body")
    return status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--path", default="/1k.bin")
    parser.add_argument("--hold", type=float, default=5.0, help="seconds; 0 = until stdin closes")
    args = parser.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.count + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.count + 64), hard))

    request = f"GET {args.path} HTTP/1.1\r\nHost: {args.host}\r\n\r\n".encode()
    socks: list[socket.socket] = []
    ok = errors = 0
    first_error = ""
    start = time.monotonic()
    for _ in range(args.count):
        try:
            sock = socket.create_connection((args.host, args.port), timeout=10)
            sock.sendall(request)
            status = read_response(sock)
            if status != 200:
                raise ValueError(f"status {status}")
            socks.append(sock)
            ok += 1
        except (OSError, ValueError) as e:
            errors += 1
            if not first_error:
                first_error = repr(e)
    elapsed = time.monotonic() - start
    print(f"READY ok={ok} errors={errors} seconds={elapsed:.2f} first_error={first_error or '-'}", flush=True)

    if args.hold > 0:
        time.sleep(args.hold)
    else:
        sys.stdin.read()

    # A connection the server closed while idle is readable (EOF); an open one is not.
    poller = select.poll()
    for sock in socks:
        poller.register(sock, select.POLLIN)
    closed = len(poller.poll(0))
    still_open = len(socks) - closed
    print(f"DONE still_open={still_open}", flush=True)
    for sock in socks:
        sock.close()
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
