"""Which reader decodes a video stream, chosen by what each can decode, before anything is
opened: decord (with the B-frame fast path of pipeline.video.frames) where decord's own
FFmpeg has a decoder for the stream's codec, PyAV alone where it has none (AV1: decord's
wheels bundle FFmpeg 4.1 without an AV1 decoder; PyAV's has dav1d).

decord is asked through its FFmpeg's public C API (`avcodec_descriptor_get_by_name`, then
`avcodec_find_decoder`), the library decord itself loaded: no error text is parsed, and a
decord built against another FFmpeg answers for that FFmpeg."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
from pathlib import Path

log = logging.getLogger("reelay.video")


@functools.cache
def _decord_avcodec() -> ctypes.CDLL | None:
    """decord's libavcodec: the one its wheel bundles (`decord.libs/`), else the system's (a
    decord built from source links it); None when neither is found."""
    import decord

    package = Path(decord.__file__).resolve().parent
    bundled = sorted((package.parent / "decord.libs").glob("libavcodec*.so*"))
    path = str(bundled[0]) if bundled else ctypes.util.find_library("avcodec")
    if not path:
        log.warning("decord's libavcodec not found: every codec goes to decord first")
        return None
    lib = ctypes.CDLL(path)
    lib.avcodec_descriptor_get_by_name.restype = ctypes.c_void_p
    lib.avcodec_descriptor_get_by_name.argtypes = [ctypes.c_char_p]
    lib.avcodec_find_decoder.restype = ctypes.c_void_p
    lib.avcodec_find_decoder.argtypes = [ctypes.c_int]
    return lib


@functools.cache
def decord_decodes(codec: str) -> bool:
    """Whether decord's FFmpeg has a decoder for `codec` (FFmpeg's codec name, as PyAV's
    `codec_context.name` gives it: "h264", "av1")."""
    lib = _decord_avcodec()
    if lib is None:
        return True
    descriptor = lib.avcodec_descriptor_get_by_name(codec.encode())
    if not descriptor:  # a codec newer than decord's FFmpeg
        return False
    codec_id = ctypes.cast(descriptor, ctypes.POINTER(ctypes.c_int))[0]  # AVCodecDescriptor.id
    return bool(lib.avcodec_find_decoder(codec_id))
