"""RFC 9218 (Extensible Prioritization Scheme for HTTP) over HTTP/2.

The frame rules are MUSTs: PRIORITY_UPDATE (type 0x10) only on stream 0 and never for stream 0
(§7.1), SETTINGS_NO_RFC7540_PRIORITIES only 0 or 1 (§2.1). The scheduling cases check what
§10 recommends, which is what a client's `priority` field is for: with two 1 MiB responses
held back by a zero stream window and then released together, the more urgent one must end
before the other has had half of its body; two incremental ones must share the bandwidth; a
PRIORITY_UPDATE must reorder open streams. A server that ignores priorities and takes turns
fails the ordering cases, one that serves a response at a time fails the sharing case.
"""

import struct

from .. import wire
from ..conn import Mismatch, Outcome
from ..registry import case
from ..wire import FRAME_SIZE_ERROR, PROTOCOL_ERROR
from .common import ready

PRIORITY_UPDATE = 0x10
NO_RFC7540_PRIORITIES = 0x9


def priority_update(prioritized, value, stream=0):
    return wire.frame(PRIORITY_UPDATE, 0, stream, struct.pack(">I", prioritized) + value.encode())


@case("rfc9218/7.1", "PRIORITY_UPDATE on a stream other than 0: connection error PROTOCOL_ERROR")
def _(t):
    c = ready(t)
    c.request(1)
    c.send(priority_update(1, "u=0", stream=1))
    return c.expect_connection_error(PROTOCOL_ERROR)


@case("rfc9218/7.1", "PRIORITY_UPDATE for stream 0: connection error PROTOCOL_ERROR")
def _(t):
    c = ready(t)
    c.send(priority_update(0, "u=0"))
    return c.expect_connection_error(PROTOCOL_ERROR)


@case("rfc9218/7.1", "PRIORITY_UPDATE shorter than its stream id: connection error FRAME_SIZE_ERROR")
def _(t):
    c = ready(t)
    c.send(wire.frame(PRIORITY_UPDATE, 0, 0, b"\0\0\1"))
    return c.expect_connection_error(FRAME_SIZE_ERROR)


@case("rfc9218/7.1", "PRIORITY_UPDATE for an idle stream, then the request: answered")
def _(t):
    c = ready(t)
    c.send(priority_update(1, "u=1, i"))
    c.request(1, extra=[("priority", "u=5")])
    return c.expect_response(1)


@case("rfc9218/2.1", "SETTINGS_NO_RFC7540_PRIORITIES of 2: connection error PROTOCOL_ERROR")
def _(t):
    c = ready(t)
    c.send(wire.settings_raw([(NO_RFC7540_PRIORITIES, 2)]))
    return c.expect_connection_error(PROTOCOL_ERROR)


def _race(t, first, second, update=None):
    """Two requests for the 1 MiB resource on streams 1 and 3 with `priority` fields `first`
    and `second` (None: no field), held back by a zero stream window until both heads are in;
    then, after `update` frames if any, both windows open at once. Returns the octets each
    stream had received when the first of them ended, and which one that was."""
    c = ready(t, {wire.INITIAL_WINDOW_SIZE: 0})
    for stream, value in ((1, first), (3, second)):
        extra = [("priority", value)] if value is not None else []
        c.request(stream, path=t.large_path, extra=extra)
    heads = set()
    while heads != {1, 3}:
        ev = c.read_until(lambda ev: ev.is_(wire.HEADERS), "response heads on streams 1 and 3")
        heads.add(ev.stream)
    if update:
        c.send(*update)
    big = 1 << 24
    c.send(wire.window_update(0, big), wire.window_update(1, big), wire.window_update(3, big))
    got = {1: 0, 3: 0}
    while True:
        ev = c.read_until(lambda ev: ev.is_(wire.DATA) or ev.is_(wire.RST_STREAM),
                          "DATA on streams 1 and 3")
        if ev.is_(wire.RST_STREAM):
            raise Mismatch("both responses", ev.describe())
        got[ev.stream] += len(ev.payload)
        if ev.flags & wire.END_STREAM:
            return got, ev.stream


def _urgent_first(t, first, second, update=None, urgent=3):
    got, ended = _race(t, first, second, update)
    other = 4 - urgent
    expected = f"stream {urgent} ends before stream {other} has half of its body"
    observed = f"stream {ended} ended first; octets then: stream 1 {got[1]}, stream 3 {got[3]}"
    if ended != urgent or got[other] * 2 >= got[urgent]:
        raise Mismatch(expected, observed)
    return Outcome(expected, observed)


@case("rfc9218/10", "u=0 is served before u=7 requested earlier")
def _(t):
    return _urgent_first(t, "u=7", "u=0")


@case("rfc9218/10", "same urgency, not incremental: the earlier stream is served first")
def _(t):
    return _urgent_first(t, None, "u=3", urgent=1)


@case("rfc9218/10", "same urgency, both incremental: the two share the bandwidth")
def _(t):
    got, ended = _race(t, "i", "u=3, i")
    other = 4 - ended
    expected = "when one ends, the other has at least half of its body"
    observed = f"stream {ended} ended first; octets then: stream 1 {got[1]}, stream 3 {got[3]}"
    if got[other] * 2 < got[ended]:
        raise Mismatch(expected, observed)
    return Outcome(expected, observed)


@case("rfc9218/7.1", "PRIORITY_UPDATE makes an open stream the more urgent one")
def _(t):
    return _urgent_first(t, "u=2", "u=4", update=[priority_update(3, "u=0")])
