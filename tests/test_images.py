"""What a model is shown: pixel limits and the paper's single-image concatenation."""

from PIL import Image

from mirsafety.core.images import SINGLE_IMAGE_GAP, concatenate, fit_pixels, load_instance_images


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
