"""The cases, one module per part of the RFCs; importing this package registers them all."""

from . import (  # noqa: F401
    floods, frame_types, hpack_cases, http_semantics, preface_frames, priority, streams,
)
