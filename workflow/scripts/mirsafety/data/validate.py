"""Checks on one raw instance and its images. Each returns problems as text; none guesses a fix.

The released MIR code silently dropped missing images; here every defect names the instance and
stops the stage, because an instance with fewer images than its prompt refers to is a different
attack from the one the benchmark defines.
"""

import multiprocessing
import re
import unicodedata
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from mirsafety.core.images import open_image, pixel_sha256
from mirsafety.core.taxonomy import CATEGORIES, RELATIONS

SAFE_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")


#: Seconds one image may take to decode. An honest image at the pixel limit decodes in a few
#: seconds; past this the decoder is taken to have hung on a hostile file.
DECODE_TIMEOUT_S = 60


@dataclass
class CheckedImage:
    """What an image that decoded completely is: its file extension, size and ``pixel_sha256``."""

    extension: str
    width: int
    height: int
    pixel_sha256: str


class ImageProblem(Exception):
    """An image that cannot be used; the message says why."""


@dataclass(frozen=True)
class FieldType:
    """What one record field must hold, the same in every layout (the hub's column types).

    ``scalars`` are the types the value may have itself and ``items`` the types of its entries
    when it may be a list; a string is never taken for a list, which would split it into
    characters. ``needed_for`` says why a missing (absent or null) value is refused; ``None``
    means the field may be missing, or that its value check refuses a missing value itself.
    """

    words: str
    scalars: tuple[type, ...] = ()
    items: tuple[type, ...] = ()
    needed_for: str | None = None


_ASKED = "the instance cannot be asked or judged without it"
_TEXTS = "a list of strings (or one string)"
_CONTEXT = "the contextual HarmBench judge reads them as the images' context"

#: The record fields and their types (images aside: their type depends on the layout). Missing
#: image_descriptions, image_keywords and iteration are refused, not defaulted: the hub declares
#: them for every row (data.sample.HUB_FEATURES) and extract_data.py writes them in every record
#: (docs/paper-facts.md), so a record without one was written by neither, and a default would
#: leave the contextual judge without its context or the record without its provenance.
FIELDS = {
    "id": FieldType("an integer or a string", (int, str)),
    "category": FieldType("a string", (str,)),
    "relationship_type": FieldType("a string", (str,)),
    "original_question": FieldType("a string", (str,), needed_for=_ASKED),
    "revised_prompt": FieldType("a string", (str,), needed_for=_ASKED),
    "image_descriptions": FieldType(_TEXTS, (str,), (str,), needed_for=_CONTEXT),
    "image_keywords": FieldType(_TEXTS, (str,), (str,),
                                needed_for="they name what each image shows"),
    "num_images": FieldType("an integer", (int,)),  # extract_data.py does not write it
    "iteration": FieldType("an integer", (int,),
                           needed_for="it records how many rewrites made the prompt"),
}

#: The ``images`` field of each layout: image structs in the hub's parquet, paths in the
#: extracted layout.
IMAGE_LISTS = {
    "hub_parquet": FieldType("a list of images (structs of bytes and path)",
                             items=(dict, type(None)), needed_for="the instance is its images"),
    "extracted": FieldType("a list of image paths", items=(str,),
                           needed_for="the instance is its images"),
}


def _is(value, types: tuple[type, ...]) -> bool:
    """``isinstance`` that does not take a bool for an integer."""
    return isinstance(value, types) and (bool in types or not isinstance(value, bool))


def _a(value, show: bool = True) -> str:
    """'a str ('2')', 'an int (42)', 'a list', 'null': the type of a wrong value, and with
    ``show`` the value itself when it is a short scalar."""
    if value is None:
        return "null"
    name, shown = type(value).__name__, repr(value)
    scalar = isinstance(value, (str, int, float)) and len(shown) <= 40
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}{f' ({shown})' if show and scalar else ''}"


def field_problem(key: str, record: dict, expected: FieldType) -> str | None:
    """What is wrong with the type of ``record[key]``, naming the field; None when nothing is."""
    value = record.get(key)
    if value is None:
        if expected.needed_for is None:
            return None
        state = "null" if key in record else "absent"
        return (f"{key} is {state}; it must be {expected.words}, because {expected.needed_for}. "
                f"Fix: give the record its {key}, as the hub dataset and the authors' "
                "extract_data.py do")
    if _is(value, expected.scalars):
        return None
    if not (expected.items and isinstance(value, list)):
        # the value is shown where a scalar was expected: a list field's fix is its shape
        return f"{key} is {_a(value, show=bool(expected.scalars))}; it must be {expected.words}"
    for index, item in enumerate(value):
        if not _is(item, expected.items):
            return f"{key}[{index}] is {_a(item)}; it must be {expected.words}"
    return None


def invisible(text: str) -> bool:
    """True when ``text`` shows nothing: whitespace, format characters (U+200B zero-width space,
    U+FEFF byte order mark, U+2060 word joiner, ...) and control characters only. ``str.strip``
    keeps format characters, so a prompt of them would pass as text."""
    return all(ch.isspace() or unicodedata.category(ch) in ("Cf", "Cc") for ch in text)


def _empty(key: str, text: str) -> str:
    hidden = sorted({f"U+{ord(ch):04X}" for ch in text if not ch.isspace()})
    shown = f" (only invisible characters: {', '.join(hidden)})" if hidden else ""
    return f"empty {key}{shown}; {_ASKED}"


def _name_problems(values: dict) -> list[str]:
    """The taxonomy and the id, which name the instance and its image files."""
    problems = []
    if "category" in values and values["category"] not in CATEGORIES:
        problems.append(f"unknown category '{values['category']}' (known: "
                        f"{', '.join(CATEGORIES)}); fix the record's category")
    if "relationship_type" in values and values["relationship_type"] not in RELATIONS:
        problems.append(f"unknown relation '{values['relationship_type']}' (known: "
                        f"{', '.join(RELATIONS)}); fix the record's relationship_type")
    if "id" in values and (values["id"] is None or not SAFE_ID.fullmatch(str(values["id"]))):
        problems.append(f"id {values['id']!r} is missing or not usable in a file name "
                        "(letters, digits, . _ -)")
    return problems


def _text_problems(values: dict) -> list[str]:
    """Texts that show nothing: the prompts, and the descriptions the contextual judge needs."""
    problems = [_empty(key, values[key]) for key in ("revised_prompt", "original_question")
                if key in values and invisible(values[key])]
    if "image_descriptions" in values and all(
            invisible(text) for text in text_list(values["image_descriptions"])):
        problems.append(f"image_descriptions holds no visible text; {_CONTEXT}")
    return problems


def _count_problems(values: dict, image_count: int | None) -> list[str]:
    if image_count == 0:
        return ["has no images"]
    declared = values.get("num_images")
    if image_count and declared is not None and declared != image_count:
        return [f"num_images says {declared} but the record has {image_count} image(s)"]
    return []


def check_fields(fields: dict) -> list[str]:
    """Problems with the record's own fields: each field's type (``FIELDS``), then the values
    of those whose type is right. ``fields["image_count"]`` is None when the images field
    itself was unusable (its problem is reported where it was read)."""
    problems, values = [], {}
    for key, expected in FIELDS.items():
        problem = field_problem(key, fields, expected)
        if problem:
            problems.append(problem)
        else:
            values[key] = fields.get(key)
    return (problems + _name_problems(values) + _text_problems(values)
            + _count_problems(values, fields["image_count"]))


def text_list(value: str | list[str]) -> list[str]:
    """A list-of-strings field as a list: one string is one entry, never split into characters
    (some dataset builds store a single description as a plain string)."""
    return [value] if isinstance(value, str) else list(value)


def check_image(data: bytes, max_pixels: int) -> CheckedImage:
    """Decode ``data`` completely, refusing empty, unreadable, non-raster (see
    ``core.images.RASTER_FORMATS``), truncated and oversized images.

    The pixel count is read from the header before decoding, so a decompression bomb is refused
    without allocating it. This runs in the calling process; ``ImageDecoder`` adds a time limit.
    """
    if len(data) == 0:
        raise ImageProblem("is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with open_image(data) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageProblem(
                        f"is {width}x{height} = {width * height:,} pixels, over "
                        f"dataset.max_image_pixels = {max_pixels:,} (possible decompression bomb)"
                    )
                image.load()
                extension = image.format.lower().replace("jpeg", "jpg")
                return CheckedImage(extension, width, height, pixel_sha256(image))
    except ImageProblem:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageProblem(f"is too large to decode safely ({error})") from error
    except UnidentifiedImageError as error:
        raise ImageProblem(str(error)) from error
    except Exception as error:  # whatever a decoder raises on untrusted bytes, the file is unusable
        raise ImageProblem(f"is corrupt ({type(error).__name__}: {error})") from error


class ImageDecoder:
    """Runs ``check_image`` in a worker process that is killed when one image takes longer than
    ``timeout_s``, so no file can hang the stage: the accepted formats make a hang unlikely, this
    makes it impossible. A context manager. The worker is forked (POSIX), so it needs nothing
    importable beyond what this process has (a Snakemake rule script is not re-run in it).
    """

    def __init__(self, max_pixels: int, timeout_s: float = DECODE_TIMEOUT_S):
        self.max_pixels, self.timeout_s = max_pixels, timeout_s
        self._pool = None

    def check(self, data: bytes) -> CheckedImage:
        if self._pool is None:
            self._pool = multiprocessing.get_context("fork").Pool(1)
        pending = self._pool.apply_async(check_image, (data, self.max_pixels))
        try:
            return pending.get(self.timeout_s)
        except multiprocessing.TimeoutError:
            self.close()
            raise ImageProblem(
                f"did not finish decoding in {self.timeout_s:g} s (the decoder hung or crashed) "
                "and was refused. Fix: re-encode it as PNG"
            ) from None

    def close(self) -> None:
        """Stop the worker, whatever it is doing."""
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
