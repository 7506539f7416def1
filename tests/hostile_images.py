"""Image files a hostile or careless dataset may hold, built in memory, and a deadline for tests
that must fail rather than hang when code regresses."""

import contextlib
import io
import signal
import struct
import zlib

from PIL import Image

#: A valid one-square EPS: Pillow renders it by running Ghostscript on it.
EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n%%EndComments\n"
       b"0 0 moveto 8 0 lineto 8 8 lineto closepath fill\nshowpage\n%%EOF\n")

#: The issue's hostile EPS: PostScript that loops forever once Ghostscript runs it.
LOOPING_EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n%%EndComments\n"
               b"{ } loop\nshowpage\n%%EOF\n")


def encode(image: Image.Image, format: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def raw_png(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes) -> bytes:
    """A PNG written by hand, for what Pillow cannot save (16-bit colour, lying headers)."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows))
            + _chunk(b"IEND", b""))


def gradient_16bit_grey(width: int = 256, height: int = 4) -> bytes:
    """A 16-bit greyscale PNG (Pillow: mode I;16), black to white left to right."""
    row = b"\0" + b"".join(struct.pack(">H", x * 65535 // (width - 1)) for x in range(width))
    return raw_png(width, height, 16, 0, row * height)


def gradient_16bit_rgb(width: int = 256, height: int = 4) -> bytes:
    """A 16-bit RGB PNG, its red channel black to full left to right."""
    row = b"\0" + b"".join(struct.pack(">HHH", x * 65535 // (width - 1), 0, 0)
                           for x in range(width))
    return raw_png(width, height, 16, 2, row * height)


def huge_declared_png(side: int = 50_000) -> bytes:
    """A PNG whose header claims ``side`` x ``side`` pixels but holds one row: a bomb's shape."""
    return raw_png(side, side, 8, 0, b"\0" + bytes(side))


class Deadline(Exception):
    """The code under test ran past its deadline (a hang)."""


@contextlib.contextmanager
def deadline(seconds: float):
    """Raise ``Deadline`` in the main thread if the block runs longer than ``seconds``."""
    def expire(signum, frame):
        raise Deadline(f"still running after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
