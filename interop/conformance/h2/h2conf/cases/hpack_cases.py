"""RFC 7541 (HPACK): a decoding error is a connection error COMPRESSION_ERROR (RFC 9113 §4.3).

Each block starts with valid request fields written as literals (no dynamic table entries), so
the one defect in it is the only thing the server can object to.
"""

from .. import wire
from ..registry import case
from ..wire import COMPRESSION_ERROR
from .common import ready

USER_AGENT = 58  # static table index of user-agent (RFC 7541 Appendix A)


def _request(t, c):
    return wire.block(c.base_fields())


def _send(t, tail, head=b""):
    c = ready(t)
    c.send(wire.headers(1, head + _request(t, c) + tail))
    return c


@case("hpack/2.3.3", "index beyond the static and (empty) dynamic tables")
def _(t):
    return _send(t, wire.indexed(70)).expect_connection_error(COMPRESSION_ERROR)


@case("hpack/6.1", "indexed field with index 0")
def _(t):
    return _send(t, wire.indexed(0)).expect_connection_error(COMPRESSION_ERROR)


@case("hpack/6.2", "literal whose name index is beyond the tables")
def _(t):
    return _send(t, wire.lit_indexed_name(70, "x")).expect_connection_error(COMPRESSION_ERROR)


@case("hpack/5.1", "integer larger than any table or string could need")
def _(t):
    # Indexed field, 7-bit prefix full, then continuation octets encoding about 2^70.
    return _send(t, b"\xff" + b"\xff" * 10 + b"\x01").expect_connection_error(COMPRESSION_ERROR)


@case("hpack/4.2", "dynamic table size update at the end of a block")
def _(t):
    return _send(t, wire.table_size_update(0)).expect_connection_error(COMPRESSION_ERROR)


@case("hpack/6.3", "dynamic table size update above SETTINGS_HEADER_TABLE_SIZE")
def _(t):
    c = ready(t)
    limit = c.server_settings.get(wire.HEADER_TABLE_SIZE, 4096)
    c.send(wire.headers(1, wire.table_size_update(limit + 1) + _request(t, c)))
    return c.expect_connection_error(COMPRESSION_ERROR)


@case("hpack/6.3", "dynamic table size update to 0 at the start of a block is accepted")
def _(t):
    c = _send(t, b"", head=wire.table_size_update(0))
    return c.expect_response(1, "a response to a block opening with a size update")


@case("hpack/5.2", "Huffman string containing the EOS symbol")
def _(t):
    # 30 ones (EOS) then 2 ones of padding.
    tail = wire.lit_indexed_name(USER_AGENT, huffman_value=b"\xff\xff\xff\xff")
    return _send(t, tail).expect_connection_error(COMPRESSION_ERROR)


@case("hpack/5.2", "Huffman padding longer than 7 bits")
def _(t):
    # 'a' (00011) then 11 bits of ones.
    tail = wire.lit_indexed_name(USER_AGENT, huffman_value=b"\x1f\xff")
    return _send(t, tail).expect_connection_error(COMPRESSION_ERROR)


@case("hpack/5.2", "Huffman padding that is not the EOS prefix (zeros)")
def _(t):
    # 'a' (00011) then 3 bits of zeros.
    tail = wire.lit_indexed_name(USER_AGENT, huffman_value=b"\x18")
    return _send(t, tail).expect_connection_error(COMPRESSION_ERROR)


@case("hpack/5.2", "valid Huffman-coded request is answered")
def _(t):
    c = ready(t)
    c.send(wire.headers(1, c.encoder.encode(c.base_fields(), huffman=True)))
    return c.expect_response(1, "a response to a Huffman-coded request")
