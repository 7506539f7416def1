"""Checks on one raw instance and its images. Each returns problems as text; none guesses a fix.

The released MIR code silently dropped missing images; here every defect names the instance and
stops the stage, because an instance with fewer images than its prompt refers to is a different
attack from the one the benchmark defines.
"""

import io
import re
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from mirsafety.core.taxonomy import CATEGORIES, RELATIONS

SAFE_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")


@dataclass
class CheckedImage:
    """An image that decoded completely: its bytes and what they are."""

    data: bytes
    extension: str
    width: int
    height: int


class ImageProblem(Exception):
    """An image that cannot be used; the message says why."""


def check_fields(fields: dict) -> list[str]:
    """Problems with the record's own fields (taxonomy, prompts, id, image count)."""
    problems = []
    if fields.get("category") not in CATEGORIES:
        problems.append(
            f"unknown category '{fields.get('category')}' (known: {', '.join(CATEGORIES)}); "
            "fix the record's category"
        )
    if fields.get("relationship_type") not in RELATIONS:
        problems.append(
            f"unknown relation '{fields.get('relationship_type')}' (known: {', '.join(RELATIONS)}); "
            "fix the record's relationship_type"
        )
    source_id = fields.get("id")
    if source_id is None or not SAFE_ID.match(str(source_id)):
        problems.append(
            f"id {source_id!r} is missing or not usable in a file name (letters, digits, . _ -)"
        )
    for key in ("revised_prompt", "original_question"):
        value = fields.get(key)
        if not isinstance(value, str) or not value.strip():
            problems.append(f"empty {key}; the instance cannot be asked or judged without it")
    for key in ("image_descriptions", "image_keywords"):
        value = fields.get(key)
        if value is not None and not isinstance(value, str) and not (
                isinstance(value, list) and all(isinstance(v, str) for v in value)):
            problems.append(f"{key} is a {type(value).__name__}; it must be a list of strings "
                            "or one string")
    count, declared = fields["image_count"], fields.get("num_images")
    if count == 0:
        problems.append("has no images")
    if declared is not None and declared != count:
        problems.append(f"num_images says {declared} but the record has {count} image(s)")
    return problems


def text_list(value) -> list[str]:
    """A list-of-strings field as a list: one string is one entry, never split into characters
    (some dataset builds store a single description as a plain string)."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def check_image(data: bytes, max_pixels: int) -> CheckedImage:
    """Decode ``data`` completely, refusing empty, unreadable, truncated and oversized images.

    The pixel count is read from the header before decoding, so a decompression bomb is refused
    without allocating it.
    """
    if len(data) == 0:
        raise ImageProblem("is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageProblem(
                        f"is {width}x{height} = {width * height:,} pixels, over "
                        f"dataset.max_image_pixels = {max_pixels:,} (possible decompression bomb)"
                    )
                image.load()
                extension = (image.format or "png").lower().replace("jpeg", "jpg")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageProblem(f"is too large to decode safely ({error})") from error
    except UnidentifiedImageError as error:
        raise ImageProblem("is not a readable image (unknown or corrupt format)") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageProblem(f"is corrupt ({error})") from error
    return CheckedImage(data, extension, width, height)
