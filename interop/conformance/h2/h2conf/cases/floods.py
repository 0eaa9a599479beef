"""Flood protections (the server's promises beyond the RFC, cf. RFC 9113 §10.5).

Each case pushes one kind of cheap-to-send, costly-to-serve traffic with a bound on volume and
time, and asserts the answer: GOAWAY ENHANCE_YOUR_CALM for rapid reset, a closed connection for
an endless header block, and for SETTINGS and PING floods either service or ENHANCE_YOUR_CALM,
with the server still answering a second connection.
"""

import socket
import ssl
import time

from .. import wire
from ..conn import Closed, Mismatch, Outcome
from ..registry import case
from ..wire import ENHANCE_YOUR_CALM, NO_ERROR
from .common import ready

FLOOD_SECONDS = 10.0


def _drain(c, seconds=0.0):
    """Read what is already there (or for `seconds`); the GOAWAY or Closed that ends it, if any."""
    deadline = time.monotonic() + seconds
    while True:
        ev = c.read(deadline)
        if ev is None:
            return None
        if isinstance(ev, Closed) or ev.is_(wire.GOAWAY):
            return ev


def _push(c, data, deadline):
    """Send `data` without blocking past `deadline`; the number of octets the server took."""
    sent = 0
    view = memoryview(data)
    while sent < len(data) and time.monotonic() < deadline:
        c.sock.settimeout(0.05)
        try:
            sent += c.sock.send(view[sent:sent + 65536])
        except (socket.timeout, TimeoutError, ssl.SSLWantWriteError):
            if _drain(c) is not None or c.closed:
                break
        except (OSError, ssl.SSLError):
            break
    return sent


def _second_connection(t):
    c = ready(t)
    c.request(1)
    return c.expect_response(1, "a response on a second connection")


@case("flood", "rapid reset (HEADERS then RST_STREAM, repeated) gets GOAWAY ENHANCE_YOUR_CALM")
def _(t):
    c = ready(t)
    expected = "GOAWAY ENHANCE_YOUR_CALM, then close"
    deadline = time.monotonic() + FLOOD_SECONDS
    stream, pairs, end = 1, 0, None
    while pairs < 20000 and time.monotonic() < deadline:
        batch = []
        for _ in range(100):
            batch.append(wire.headers(stream, c.fields_block()))
            batch.append(wire.rst_stream(stream, wire.CANCEL))
            stream += 2
        pairs += 100
        if not c.send(*batch):
            break
        end = _drain(c)
        if end is not None:
            break
    if end is None:
        end = _drain(c, c.timeout)
    if end is None:
        raise Mismatch(expected, f"{pairs} HEADERS+RST_STREAM pairs sent, no GOAWAY, still open")
    if isinstance(end, Closed):
        raise Mismatch(expected, f"after {pairs} pairs: {end.describe()} without GOAWAY")
    if end.code != ENHANCE_YOUR_CALM:
        raise Mismatch(expected, f"after {pairs} pairs: {end.describe()}")
    after = _drain(c, c.timeout)
    if after is None:
        raise Mismatch(expected, f"after {pairs} pairs: {end.describe()}, connection left open")
    _second_connection(t)
    return Outcome(expected, f"after {pairs} pairs: {end.describe()}, then {after.describe()}")


@case("flood", "CONTINUATION flood (no END_HEADERS) closes the connection with an error")
def _(t):
    c = ready(t)
    expected = "connection closed (GOAWAY, if any, with an error code) within the bound"
    blk = c.fields_block()
    c.send(wire.headers(1, blk, end_headers=False))
    chunk = wire.block([(f"x-flood-{i}", "a" * 100) for i in range(140)])
    frames = wire.continuation(1, chunk, end_headers=False) * 16
    deadline = time.monotonic() + FLOOD_SECONDS
    total, end = 0, None
    while total < 64 << 20 and time.monotonic() < deadline:
        n = _push(c, frames, deadline)
        total += n
        end = _drain(c)
        if end is not None or c.closed or n < len(frames):
            break
    if end is None:
        end = _drain(c, c.timeout)
    mib = total / (1 << 20)
    if end is None:
        raise Mismatch(expected, f"{mib:.1f} MiB of CONTINUATION sent, connection still open")
    if not isinstance(end, Closed):
        if end.code == NO_ERROR:
            raise Mismatch(expected, f"after {mib:.1f} MiB: {end.describe()}")
        after = _drain(c, c.timeout)
        if after is None:
            raise Mismatch(expected, f"after {mib:.1f} MiB: {end.describe()}, left open")
        observed = f"after {mib:.1f} MiB: {end.describe()}, then {after.describe()}"
    else:
        observed = f"after {mib:.1f} MiB: {end.describe()} (no GOAWAY)"
    _second_connection(t)
    return Outcome(expected, observed)


def _control_flood(t, one_frame, name):
    """Send many `one_frame`s without reading, then a request: served or ENHANCE_YOUR_CALM."""
    c = ready(t)
    expected = (f"{name} flood: either every ACK and then a response on stream 1, or GOAWAY "
                "ENHANCE_YOUR_CALM; and a second connection answered")
    count = 100_000
    flood = one_frame * count
    deadline = time.monotonic() + FLOOD_SECONDS
    sent = 0
    while sent < len(flood) and time.monotonic() < deadline and not c.closed:
        c.sock.settimeout(0.05)
        try:
            sent += c.sock.send(memoryview(flood)[sent:sent + 65536])
        except (socket.timeout, TimeoutError, ssl.SSLWantWriteError):
            # The server stopped reading until we take its ACKs: take them.
            if _drain(c) is not None:
                break
        except (OSError, ssl.SSLError):
            break
    stopped = _drain(c)
    if stopped is None and sent == len(flood):
        c.request(1)
        deadline = time.monotonic() + FLOOD_SECONDS
        while True:
            ev = c.read(deadline)
            if ev is None:
                raise Mismatch(expected, f"{count} {name} sent, then no response within "
                               f"{FLOOD_SECONDS:g} s")
            if isinstance(ev, Closed) or ev.is_(wire.GOAWAY):
                stopped = ev
                break
            if ev.is_(wire.HEADERS, 1) or ev.is_(wire.RST_STREAM, 1):
                observed = f"{count} {name} sent, then {ev.describe()}"
                if ev.is_(wire.RST_STREAM):
                    raise Mismatch(expected, observed)
                _second_connection(t)
                return Outcome(expected, observed + "; second connection answered")
    if stopped is None:
        raise Mismatch(expected, f"sent {sent // len(one_frame)} of {count} {name} in "
                       f"{FLOOD_SECONDS:g} s, server neither reading nor closing")
    done = f"after {sent // len(one_frame)} {name}: {stopped.describe()}"
    if isinstance(stopped, Closed) or stopped.code != ENHANCE_YOUR_CALM:
        raise Mismatch(expected, done)
    _second_connection(t)
    return Outcome(expected, done + "; second connection answered")


@case("flood", "SETTINGS flood: served or ENHANCE_YOUR_CALM, server stays responsive")
def _(t):
    return _control_flood(t, wire.settings(), "SETTINGS")


@case("flood", "PING flood: served or ENHANCE_YOUR_CALM, server stays responsive")
def _(t):
    return _control_flood(t, wire.ping(b"floodflo"), "PING")


