#!/usr/bin/env python3
"""Run the HTTP/2 conformance cases against one server.

    run.py --host 127.0.0.1 --port 8443 [--tls] [--filter TEXT] [--list]

Every case gets fresh connections. One line per case:

    PASS http2/6.5/1 SETTINGS ACK with a payload | expected ... | observed ...

then `N passed, M failed` (`, K skipped` when a case could not apply; with a known-failures list, listed failures count as `xfailed` and listed passes as `xpassed`, as pytest counts them), and the exit status is 1
when any case failed. With `--known-failures FILE` (case ids, one a line, `#` comments), a
listed case that fails is printed as XFAIL and does not fail the run, while a listed case that
passes (XPASS) does, so that the list shrinks as the server is fixed.

`--path` must name a resource with a non-empty body and `--large-path` one larger than 65535
octets (docroot.sh creates both).
"""

import argparse
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from h2conf import cases  # noqa: E402,F401  (registers the cases)
from h2conf.conn import Mismatch, Skip, Target  # noqa: E402
from h2conf.registry import CASES  # noqa: E402


GROUPS = ["http2", "hpack", "flood"]


def _order(case):
    """RFC order: http2 sections, then hpack, then floods; numbers compared as numbers."""
    group, *section, n = case.ident.split("/")
    numbers = [int(x) if x.isdigit() else 0 for part in section for x in part.split(".")]
    return (GROUPS.index(group) if group in GROUPS else len(GROUPS), numbers, int(n))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required="--list" not in sys.argv)
    p.add_argument("--tls", action="store_true", help="TLS with ALPN h2 (certificate not verified)")
    p.add_argument("--filter", default="", help="run the cases whose id or title contains this")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for an outcome")
    p.add_argument("--path", default="/index.html")
    p.add_argument("--large-path", default="/large.bin")
    p.add_argument("--known-failures", metavar="FILE",
                   help="case ids expected to fail (XFAIL); one that passes fails the run")
    p.add_argument("--list", action="store_true", help="print the cases and exit")
    a = p.parse_args()

    wanted = [c for c in sorted(CASES, key=_order)
              if a.filter.lower() in c.ident.lower() or a.filter.lower() in c.title.lower()]
    if a.list:
        for c in wanted:
            print(f"{c.ident:18} {c.title}")
        return 0

    known = _read_known(a.known_failures) if a.known_failures else set()
    unknown = known - {c.ident for c in CASES}
    if unknown:
        print(f"known-failures list names no such case: {', '.join(sorted(unknown))}")
        return 2

    target = Target(a.host, a.port, a.tls, a.timeout, a.path, a.large_path)
    mode = "TLS (ALPN h2)" if a.tls else "h2c (prior knowledge)"
    print(f"HTTP/2 conformance: {len(wanted)} cases against {a.host}:{a.port} over {mode}")
    passed = failed = skipped = xfail = xpass = 0
    for c in wanted:
        start = time.monotonic()
        try:
            out = c.fn(target)
            verdict, detail = "PASS", f"expected {out.expected} | observed {out.observed}"
            passed += 1
        except Mismatch as m:
            verdict, detail = "FAIL", f"expected {m.expected} | observed {m.observed}"
            failed += 1
        except Skip as s:
            verdict, detail = "SKIP", str(s)
            skipped += 1
        except Exception as e:  # a broken case or an unreachable server: a failure, shown
            verdict = "FAIL"
            detail = f"error in the case: {e.__class__.__name__}: {e}"
            if os.environ.get("H2CONF_TRACE"):
                traceback.print_exc()
            failed += 1
        finally:
            target.close_all()
        took = time.monotonic() - start
        if c.ident in known and verdict == "FAIL":
            verdict, xfail = "XFAIL", xfail + 1
        elif c.ident in known and verdict == "PASS":
            verdict, xpass = "XPASS", xpass + 1
            detail += " | listed as a known failure: remove it from the list"
        print(f"{verdict} {c.ident} {c.title} | {detail} ({took:.1f} s)", flush=True)
    # As pytest counts them: a listed case that fails is "xfailed", not "failed"; one that passes
    # is "xpassed" and fails the run.
    tail = f", {skipped} skipped" if skipped else ""
    tail += f", {xfail} xfailed" if xfail else ""
    tail += f", {xpass} xpassed" if xpass else ""
    print(f"{passed - xpass} passed, {failed - xfail} failed{tail}")
    if known:
        print(f"of the failures, {xfail} are known (XFAIL, {a.known_failures}); "
              f"{xpass} known failures now pass (XPASS)")
    return 1 if failed - xfail or xpass else 0


def _read_known(path):
    with open(path, encoding="utf-8") as f:
        return {line.split("#", 1)[0].strip() for line in f} - {""}


if __name__ == "__main__":
    sys.exit(main())
