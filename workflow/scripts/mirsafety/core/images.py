"""Images as a model receives them: loaded from the prepared dataset, pixel limits, one-image mode."""

import math
from pathlib import Path

from PIL import Image

#: The paper's rule for models that take a single image: side by side with 50-pixel gaps.
SINGLE_IMAGE_GAP = 50


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
    canvas = Image.new("RGB", (width, height), "white")
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
        with Image.open(Path(dataset_dir, relative)) as image:
            images.append(image.convert("RGB"))
    if single_image:
        images = [concatenate(images)]
    return [fit_pixels(i, min_pixels, max_pixels) for i in images]
