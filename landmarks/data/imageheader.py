"""What an image file claims to be, read from its header before anything is decoded.

A few hundred bytes of PNG can declare 60000x60000 pixels; decoding such a file would allocate
gigabytes (OpenCV refuses above ``CV_IO_MAX_IMAGE_PIXELS`` with a ``cv2.error``). This module
reads the declared size of PNG, JPEG, BMP and WebP files with a few ``struct`` calls, so that
:func:`landmarks.data.formats.read_image` can refuse an oversized or truncated file with a clear
message first. Other formats return ``None`` and are left to the decoder.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# Larger declared sizes are refused before decoding: 100 megapixels is ~300 MB as RGB, above any
# camera photo (a 50 MP phone photo is half of it) and far above what a landmark model needs.
MAX_IMAGE_PIXELS = 100_000_000

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers carry the size: SOF0-SOF15 except DHT (C4), JPG (C8) and DAC (CC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01}  # RSTn and TEM: no length field


@dataclass(frozen=True)
class ImageHeader:
    """``kind`` (png, jpeg, bmp, webp), the declared ``width`` x ``height``, and whether the data
    stops before the image ends (``truncated``: no PNG IEND chunk, no JPEG end-of-image marker)."""

    kind: str
    width: int
    height: int
    truncated: bool = False

    @property
    def pixels(self) -> int:
        return self.width * self.height


class HeaderError(ValueError):
    """The file starts like a known format but its header is broken."""


def read_header(data: bytes) -> ImageHeader | None:
    """The header of a PNG, JPEG, BMP or WebP file; ``None`` for any other format.

    Raises :class:`HeaderError` when the file has a known signature but a broken header.
    """
    if data.startswith(_PNG_MAGIC):
        return _png(data)
    if data.startswith(b"\xff\xd8"):
        return _jpeg(data)
    if data.startswith(b"BM") and len(data) >= 26:
        return _bmp(data)
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return _webp(data)
    return None


def _png(data: bytes) -> ImageHeader:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise HeaderError("PNG without an IHDR header")
    width, height = struct.unpack(">II", data[16:24])
    return ImageHeader("png", width, height, truncated=data.rfind(b"IEND") < 0)


def _jpeg(data: bytes) -> ImageHeader:
    """Walk the marker segments to the first SOF (size) and on to the first SOS (image data)."""
    pos, size = 2, None
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise HeaderError(f"JPEG marker expected at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in _JPEG_SOF:
            if pos + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            size = (width, height)
        if marker == 0xDA:  # start of scan: the entropy-coded data follows; EOI must come after it
            if size is None:
                raise HeaderError("JPEG scan before any frame header")
            return ImageHeader("jpeg", *size, truncated=data.find(b"\xff\xd9", pos) < 0)
        pos += 2 + length
    if size is None:
        raise HeaderError("JPEG without a frame header (truncated?)")
    return ImageHeader("jpeg", *size, truncated=True)


def _bmp(data: bytes) -> ImageHeader:
    (header_size,) = struct.unpack("<I", data[14:18])
    if header_size == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        width, height = struct.unpack("<HH", data[18:22])
    else:
        width, height = struct.unpack("<ii", data[18:26])
    return ImageHeader("bmp", abs(width), abs(height))  # negative height: a top-down bitmap


def _webp(data: bytes) -> ImageHeader:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30:
        width, height = struct.unpack("<HH", data[26:30])
        return ImageHeader("webp", width & 0x3FFF, height & 0x3FFF)
    if chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return ImageHeader("webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X" and len(data) >= 30:
        return ImageHeader("webp", int.from_bytes(data[24:27], "little") + 1,
                           int.from_bytes(data[27:30], "little") + 1)
    raise HeaderError("WebP without a VP8/VP8L/VP8X chunk")
