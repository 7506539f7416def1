"""What a model is asked about one instance under one condition, and a key of it.

Generation asks it, the entropy pass asks it again to replay the same input, and the resume
ledger keys each item by it; all three read this one definition, below the stages that use it.
"""

from pathlib import Path

from mirsafety.core.images import load_instance_images
from mirsafety.core.records import settings_key, sha256_file
from mirsafety.models.backend import Request

#: The paper's controls: the benchmark as is, its images concatenated into one picture, the seed
#: question alone, and the multi-image prompt without its images.
CONDITIONS = ("multi_image", "single_image", "text_only", "prompt_only")


def _asked(instance: dict, condition: str) -> tuple[str, list[str]]:
    """The text and the image files one condition puts to the model about an instance."""
    if condition == "text_only":
        return instance["original_question"], []
    if condition == "prompt_only":
        return instance["revised_prompt"], []
    return instance["revised_prompt"], instance["images"]


def make_request(instance: dict, dataset_dir, model: dict,
                 condition: str = "multi_image") -> Request:
    """What the model is asked for one instance under one condition."""
    prompt, paths = _asked(instance, condition)
    images = []
    if paths:
        pixels = model["image_pixels"]
        images = load_instance_images(
            dataset_dir, paths, single_image=model["single_image"] or condition == "single_image",
            min_pixels=pixels["min"], max_pixels=pixels["max"])
    return Request(instance["uid"], prompt, images, model["system_prompt"])


def _file_sha256(path) -> str | None:
    """The file's sha256, or None when it cannot be read (``make_request`` then fails the item
    with the reason)."""
    try:
        return sha256_file(path)
    except OSError:
        return None


def request_key(instance: dict, dataset_dir, model: dict, condition: str = "multi_image") -> str:
    """A key of what ``make_request`` asks about one instance: its text, the system prompt, the
    condition and the bytes of each image file, so that the resume ledger redoes an item whose
    prompt or image was edited in place. The rest of the model entry (decoding, image sizing,
    weights) is in the shard's settings, which discard the whole ledger when they change."""
    prompt, paths = _asked(instance, condition)
    return settings_key({"prompt": prompt, "system_prompt": model["system_prompt"],
                         "condition": condition,
                         "images": [_file_sha256(Path(dataset_dir, p)) for p in paths]})
