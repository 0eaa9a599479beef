"""Set-ups that several cases share."""

from .. import wire


def ready(t, values=None):
    """A connection past the handshake (preface, SETTINGS exchanged both ways)."""
    return t.connect().handshake(values)


def stalled(t, end_stream=True, path=None):
    """A connection whose stream 1 stays active: the server may send no DATA.

    Our SETTINGS_INITIAL_WINDOW_SIZE is 0 and the resource has a body, so the response cannot
    finish. With `end_stream` the stream is half-closed (remote) at the server (RFC 9113 §5.1),
    without it the stream is open.
    """
    c = ready(t, {wire.INITIAL_WINDOW_SIZE: 0})
    c.request(1, path=path, end_stream=end_stream)
    return c


def closed_stream(t):
    """A connection whose stream 1 is closed: both sides sent END_STREAM."""
    c = ready(t)
    c.request(1)
    c.complete_response(1)
    return c


def reset_stream(t):
    """A connection whose stream 1 the client opened and then reset (CANCEL)."""
    c = ready(t)
    c.request(1, end_stream=False)
    c.send(wire.rst_stream(1, wire.CANCEL))
    return c
