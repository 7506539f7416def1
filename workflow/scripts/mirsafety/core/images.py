"""Images as a model receives them: which formats are opened, how any mode becomes RGB, pixel
limits, one-image mode."""

import hashlib
import io
import math
from pathlib import Path

from PIL import Image, UnidentifiedImageError

#: The paper's rule for models that take a single image: side by side with 50-pixel gaps.
SINGLE_IMAGE_GAP = 50

#: What transparent pixels are shown on: the colour of the single-image canvas, so an image with
#: alpha looks the same alone and concatenated.
BACKGROUND = "white"

#: The only formats opened. Pillow otherwise tries every plugin it has: EPS hands the file to
#: Ghostscript (arbitrary PostScript, which can loop forever), and rarely used plugins are attack
#: surface no benchmark image needs. These decoders run in-process on the bytes alone, and their
#: work grows with the pixel count, which is checked against a limit before decoding.
RASTER_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")

#: Modes with more than 8 bits per sample, which ``convert("RGB")`` clips instead of scaling.
#: 16-bit colour PNGs are not among them: Pillow reads those as RGB/RGBA, scaled already.
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
UNBOUNDED = ("I", "F")


def _format_named(prefix: bytes) -> str | None:
    """The Pillow format whose signature ``prefix`` (the first 16 bytes) carries, if it is not an
    accepted one; only the plugins' signature checks run, never a decoder."""
    Image.init()
    for name, (_factory, accept) in Image.OPEN.items():
        if name not in RASTER_FORMATS and accept is not None and accept(prefix):
            return name
    return None


def open_image(source: bytes | Path) -> Image.Image:
    """Open ``source`` (bytes or a file) if it is one of ``RASTER_FORMATS``.

    Refusals raise ``UnidentifiedImageError`` with a message that starts with "is ...", naming the
    format when its signature is known, for the caller to put after the image's name.
    """
    if isinstance(source, bytes):
        stream, prefix = io.BytesIO(source), source[:16]
    else:
        stream = Path(source)
        with open(stream, "rb") as file:
            prefix = file.read(16)
    try:
        return Image.open(stream, formats=RASTER_FORMATS)
    except UnidentifiedImageError:
        accepted = ", ".join(RASTER_FORMATS)
        name = _format_named(prefix)
        if name is None:
            message = f"is not a readable image (unknown or corrupt format; accepted: {accepted})"
        else:
            message = (f"is in {name} format; only {accepted} images are accepted, as other "
                       "formats can run code or hang when decoded. Fix: convert it to PNG")
        raise UnidentifiedImageError(message) from None


def _to_8bit(image: Image.Image) -> Image.Image:
    """A greyscale ``L`` image from a high-bit-depth one, scaled rather than clipped: 16-bit
    modes by their bit depth (0..65535), 32-bit integer and float modes, which have no fixed
    range, from 0 (or their minimum, if negative) to their maximum."""
    if image.mode in SIXTEEN_BIT:
        low, high = 0, 65535
    else:
        minimum, maximum = image.getextrema()
        low = min(minimum, 0)
        high = maximum
    scale = 255 / (high - low) if high > low else 0.0
    # converting F to L truncates (and clips), so add 0.5 to round to the nearest level
    return image.convert("F").point(lambda v: (v - low) * scale + 0.5).convert("L")


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB, as every model is shown it: high bit depths scaled to 8 bits,
    transparency (alpha, a palette's or a colour key) composited onto ``BACKGROUND``."""
    if image.mode in SIXTEEN_BIT + UNBOUNDED:
        image = _to_8bit(image)
    if image.has_transparency_data:
        canvas = Image.new("RGBA", image.size, BACKGROUND)
        image = Image.alpha_composite(canvas, image.convert("RGBA"))
    return image.convert("RGB")


def pixel_sha256(image: Image.Image) -> str:
    """sha256 of the image as ``to_rgb`` makes it (mode, size, pixels): the same for the same
    picture whatever file format or encoder settings carried it."""
    rgb = to_rgb(image)
    header = f"{rgb.mode} {rgb.width}x{rgb.height}\n".encode("ascii")
    return hashlib.sha256(header + rgb.tobytes()).hexdigest()


def fit_pixels(image: Image.Image, min_pixels: int | None, max_pixels: int | None) -> Image.Image:
    """Scale (keeping the aspect ratio) into [min_pixels, max_pixels]; unchanged when inside."""
    pixels = image.width * image.height
    scale = 1.0
    if max_pixels and pixels > max_pixels:
        scale = math.sqrt(max_pixels / pixels)
    elif min_pixels and pixels < min_pixels:
        scale = math.sqrt(min_pixels / pixels)
    if scale == 1.0:
        return image
    size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC)


def concatenate(images: list[Image.Image], gap: int = SINGLE_IMAGE_GAP) -> Image.Image:
    """One picture: the images left to right, centred vertically, on white, ``gap`` px apart."""
    width = sum(i.width for i in images) + gap * (len(images) - 1)
    height = max(i.height for i in images)
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    x = 0
    for image in images:
        canvas.paste(image, (x, (height - image.height) // 2))
        x += image.width + gap
    return canvas


def load_instance_images(dataset_dir, relative_paths: list[str], *, single_image: bool = False,
                         min_pixels: int | None = None, max_pixels: int | None = None):
    """The instance's images as RGB, concatenated first in single-image mode, then fitted."""
    images = []
    for relative in relative_paths:
        path = Path(dataset_dir, relative)
        try:
            image = open_image(path)
        except UnidentifiedImageError as error:
            raise UnidentifiedImageError(f"{path} {error}") from None
        with image:
            images.append(to_rgb(image))
    if single_image:
        images = [concatenate(images)]
    return [fit_pixels(i, min_pixels, max_pixels) for i in images]
