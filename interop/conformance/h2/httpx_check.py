#!/usr/bin/env python3
"""The same files semantics over HTTP/2, seen by python httpx (an independent client built on
the `h2` state machine), over TLS (ALPN h2) and h2c prior knowledge.

    httpx_check.py --host 127.0.0.1 --port N [--tls]

Each check prints PASS or FAIL with what it saw; the closing line is `N passed, M failed` and
the exit status is 1 when any check failed. The document root is docroot.sh's: /index.html and
/large.bin (1 MiB of "L").
"""

import argparse
import asyncio
import sys

import httpx

LARGE = 1024 * 1024


def checks(client: httpx.Client, base: str):
    def get(path, **headers):
        return client.get(base + path, headers=headers)

    r = get("/index.html")
    yield "GET is answered over HTTP/2", r.http_version == "HTTP/2" and r.status_code == 200, \
        f"{r.http_version} {r.status_code}"
    etag = r.headers.get("etag")
    yield "ETag and Last-Modified are sent", bool(etag) and "last-modified" in r.headers, \
        f"etag={etag!r} last-modified={r.headers.get('last-modified')!r}"

    h = client.head(base + "/large.bin")
    yield "HEAD has the length and no body", h.status_code == 200 and \
        h.headers.get("content-length") == str(LARGE) and h.content == b"", \
        f"{h.status_code} length={h.headers.get('content-length')} body={len(h.content)}"

    r = get("/large.bin", range="bytes=10-19")
    yield "a single range is 206 with Content-Range", r.status_code == 206 and \
        r.headers.get("content-range") == f"bytes 10-19/{LARGE}" and r.content == b"L" * 10, \
        f"{r.status_code} {r.headers.get('content-range')} {len(r.content)} bytes"

    r = get("/large.bin", range="bytes=0-0,-1")
    ctype = r.headers.get("content-type", "")
    yield "several ranges are multipart/byteranges", r.status_code == 206 and \
        ctype.startswith("multipart/byteranges"), f"{r.status_code} {ctype}"

    r = get("/large.bin", range=f"bytes={LARGE}-")
    yield "an unsatisfiable range is 416 with bytes */LEN", r.status_code == 416 and \
        r.headers.get("content-range") == f"bytes */{LARGE}", \
        f"{r.status_code} {r.headers.get('content-range')}"

    r = client.get(base + "/index.html", headers={"if-none-match": etag or '"x"'})
    yield "If-None-Match with the current ETag is 304", r.status_code == 304 and r.content == b"", \
        f"{r.status_code} body={len(r.content)}"

    r = client.get(base + "/index.html", headers={"if-match": '"not-it"'})
    yield "If-Match with another ETag is 412", r.status_code == 412, f"{r.status_code}"

    r = get("/large.bin")
    yield "a 1 MiB body arrives whole", r.status_code == 200 and r.content == b"L" * LARGE, \
        f"{r.status_code} {len(r.content)} bytes"

    r = client.post(base + "/index.html", content=b"x")
    yield "other methods are 405 with Allow", r.status_code == 405 and \
        "GET" in r.headers.get("allow", ""), f"{r.status_code} allow={r.headers.get('allow')!r}"

    r = get("/missing")
    yield "a missing file is 404", r.status_code == 404, f"{r.status_code}"


async def concurrent(base: str, tls: bool) -> tuple[bool, str]:
    """50 requests at once on one client: all answered over HTTP/2, on one connection."""
    async with httpx.AsyncClient(http1=False, http2=True, verify=False,
                                 timeout=30.0) as client:
        replies = await asyncio.gather(*(client.get(base + "/index.html") for _ in range(50)))
    versions = {r.http_version for r in replies}
    statuses = {r.status_code for r in replies}
    return versions == {"HTTP/2"} and statuses == {200}, f"versions={versions} statuses={statuses}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tls", action="store_true")
    a = p.parse_args()
    scheme = "https" if a.tls else "http"
    base = f"{scheme}://{a.host}:{a.port}"
    print(f"httpx {httpx.__version__} against {base} (HTTP/2 {'over TLS' if a.tls else 'prior knowledge'})")
    passed = failed = 0
    with httpx.Client(http1=False, http2=True, verify=False, timeout=30.0) as client:
        results = list(checks(client, base))
    results.append(("50 concurrent requests share one HTTP/2 client", *asyncio.run(concurrent(base, a.tls))))
    for title, ok, seen in results:
        print(f"{'PASS' if ok else 'FAIL'} {title} | {seen}")
        passed, failed = (passed + 1, failed) if ok else (passed, failed + 1)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
