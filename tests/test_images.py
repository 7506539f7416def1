"""What a model is shown: accepted formats, conversion to RGB, pixel limits and the paper's
single-image concatenation."""

import io

import pytest
from hostile_images import EPS, encode, gradient_16bit_grey, gradient_16bit_rgb
from PIL import Image, UnidentifiedImageError

from mirsafety.core.images import (
    RASTER_FORMATS,
    SINGLE_IMAGE_GAP,
    concatenate,
    fit_pixels,
    load_instance_images,
    open_image,
    pixel_sha256,
    to_rgb,
)


def test_concatenate_puts_images_side_by_side_with_50px_white_gaps():
    images = [Image.new("RGB", (30, 20), "red"), Image.new("RGB", (40, 10), "blue"),
              Image.new("RGB", (10, 20), "green")]
    canvas = concatenate(images)
    assert SINGLE_IMAGE_GAP == 50
    assert canvas.size == (30 + 40 + 10 + 2 * 50, 20)
    assert canvas.getpixel((0, 0)) == (255, 0, 0)
    assert canvas.getpixel((30 + 25, 10)) == (255, 255, 255)  # in the first gap
    assert canvas.getpixel((80, 10)) == (0, 0, 255)  # second image, centred vertically
    assert canvas.getpixel((80, 0)) == (255, 255, 255)
    assert canvas.getpixel((170 + 5, 10)) == (0, 128, 0)


def test_fit_pixels_scales_into_the_range_keeping_aspect():
    big = fit_pixels(Image.new("RGB", (400, 200)), None, 20000)
    assert big.width * big.height <= 20000 and abs(big.width / big.height - 2) < 0.05
    small = fit_pixels(Image.new("RGB", (10, 10)), 10000, None)
    assert small.size == (100, 100)
    same = Image.new("RGB", (50, 50))
    assert fit_pixels(same, 100, 10000) is same


def test_load_instance_images_single_image_mode(tmp_path):
    for k, colour in enumerate(["red", "blue"]):
        Image.new("RGB", (20, 20), colour).save(tmp_path / f"{k}.png")
    assert len(load_instance_images(tmp_path, ["0.png", "1.png"])) == 2
    (one,) = load_instance_images(tmp_path, ["0.png", "1.png"], single_image=True)
    assert one.size == (90, 20)


def grey_values(image):
    return [image.getpixel((x, 0))[0] for x in range(image.width)]


def test_16bit_greyscale_is_scaled_not_clipped(tmp_path):
    (tmp_path / "g.png").write_bytes(gradient_16bit_grey())
    (image,) = load_instance_images(tmp_path, ["g.png"])
    values = grey_values(image)
    assert image.mode == "RGB"
    assert values[0] == 0 and values[-1] == 255
    assert values == sorted(values) and len(set(values)) == 256  # a gradient, not a white page


@pytest.mark.parametrize("mode, top, expected", [
    ("I;16", 65535, [0, 128, 255]), ("I;16B", 65535, [0, 128, 255]),
    ("I", 100_000, [0, 128, 255]), ("F", 1.0, [0, 128, 255]),
])
def test_every_high_bit_depth_mode_is_scaled_to_8_bits(mode, top, expected):
    image = Image.new(mode, (3, 1))
    for x, fraction in enumerate((0, 0.5, 1)):
        image.putpixel((x, 0), fraction * top if mode == "F" else round(fraction * top))
    assert grey_values(to_rgb(image)) == expected


def test_16bit_colour_png_keeps_its_gradient(tmp_path):
    (tmp_path / "c.png").write_bytes(gradient_16bit_rgb())
    (image,) = load_instance_images(tmp_path, ["c.png"])
    reds = grey_values(image)
    assert reds[0] == 0 and reds[-1] == 255 and len(set(reds)) == 256


def test_transparency_is_composited_onto_white():
    rgba = Image.new("RGBA", (3, 1))
    rgba.putpixel((0, 0), (255, 0, 0, 0))  # invisible red
    rgba.putpixel((1, 0), (0, 0, 0, 128))  # half-transparent black
    rgba.putpixel((2, 0), (0, 0, 255, 255))  # opaque blue
    rgb = to_rgb(rgba)
    assert [rgb.getpixel((x, 0)) for x in range(3)] == [
        (255, 255, 255), (127, 127, 127), (0, 0, 255)]
    assert to_rgb(Image.new("LA", (1, 1), (0, 0))).getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize("mode, colour", [("P", 0), ("RGB", (1, 2, 3)), ("L", 7)])
def test_a_transparent_colour_key_or_palette_entry_becomes_white(tmp_path, mode, colour):
    image = Image.new(mode, (2, 2), colour)
    if mode == "P":
        image.putpalette([255, 0, 0] * 256)
    (tmp_path / "t.png").write_bytes(encode(image, transparency=colour))
    (loaded,) = load_instance_images(tmp_path, ["t.png"])
    assert loaded.getpixel((0, 0)) == (255, 255, 255)


def test_transparent_images_look_the_same_alone_and_concatenated(tmp_path):
    Image.new("RGBA", (10, 10), (255, 0, 0, 0)).save(tmp_path / "clear.png")
    (alone,) = load_instance_images(tmp_path, ["clear.png"])
    (together,) = load_instance_images(tmp_path, ["clear.png", "clear.png"], single_image=True)
    assert alone.getpixel((5, 5)) == together.getpixel((5, 5)) == together.getpixel((15, 5))


def test_an_eps_file_is_refused_by_name_without_running_ghostscript(tmp_path, monkeypatch):
    from PIL import EpsImagePlugin

    def no_ghostscript(*args, **kwargs):
        raise AssertionError("Ghostscript was run")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", no_ghostscript)
    (tmp_path / "a.eps").write_bytes(EPS)
    with pytest.raises(UnidentifiedImageError) as error:
        load_instance_images(tmp_path, ["a.eps"])
    assert str(error.value) == (
        f"{tmp_path / 'a.eps'} is in EPS format; only PNG, JPEG, WEBP, GIF, BMP, TIFF images are "
        "accepted, as other formats can run code or hang when decoded. Fix: convert it to PNG")


def test_every_accepted_format_opens():
    picture = Image.new("RGB", (8, 8), "red")
    for name in RASTER_FORMATS:
        with open_image(encode(picture, name)) as image:
            assert image.format == name


def test_pixel_hash_ignores_the_encoding_but_not_the_pixels():
    picture = Image.effect_noise((16, 16), 40).convert("RGB")
    hashes = {pixel_sha256(Image.open(io.BytesIO(encode(picture, name, **options))))
              for name, options in [("PNG", {}), ("PNG", {"compress_level": 0}), ("BMP", {}),
                                    ("TIFF", {}), ("WEBP", {"lossless": True})]}
    assert len(hashes) == 1
    picture.putpixel((0, 0), (0, 0, 0))
    assert pixel_sha256(picture) not in hashes
