"""An HTTP/2 conformance suite that speaks raw frames.

The suite drives a server over one TCP (or TLS) connection per case. Valid frames are built
with `hyperframe` and header blocks with `hpack`, the frame and HPACK layers of python `h2`;
frames that a correct client would never send are built byte by byte in `wire`. Each case
asserts one outcome of RFC 9113 or RFC 7541: a connection error (GOAWAY with a code, then
close), a stream error (RST_STREAM with a code, the connection still usable) or a normal
answer. It never synchronises by sleeping: every read has a deadline.
"""
