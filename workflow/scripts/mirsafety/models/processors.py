"""Loading a model's processor where torchvision is missing.

The Qwen2-VL, Qwen2.5-VL, GLM-4.1V, InternVL and LLaVA-OneVision processors insist on a video
processor, and that needs torchvision, which cannot load beside the CPU torch used here:
``AutoProcessor`` then fails (ImportError), or, for some folders, quietly returns only the
tokenizer. The study only sends images, so an *image-only*
subclass (the stock processor with the video part left out) serves on CPU. Where torchvision is
installed (GPU machines), ``load_processor`` returns the stock processor unchanged.
"""

import copy
import inspect
import logging

from transformers import AutoConfig, AutoProcessor, ProcessorMixin
from transformers.models.glm4v.processing_glm4v import Glm4vProcessor
from transformers.models.internvl.processing_internvl import InternVLProcessor
from transformers.models.llava_onevision.processing_llava_onevision import LlavaOnevisionProcessor
from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor
from transformers.models.qwen2_vl.processing_qwen2_vl import Qwen2VLProcessor

log = logging.getLogger(__name__)

# Settings the Qwen2-VL video processor shares with the image processor (same patches, same merge).
_SHARED_WITH_VIDEO = (
    "patch_size",
    "temporal_patch_size",
    "merge_size",
    "size",
    "image_mean",
    "image_std",
    "do_resize",
    "do_rescale",
    "rescale_factor",
    "do_normalize",
    "do_convert_rgb",
)


class _ImageOnly:
    """Mixin: the stock Qwen2-VL-family processor minus the video processor.

    What it saves is what the stock processor would save (the stock class name, and a video
    processor config derived from the image settings), so the folder loads with ``AutoProcessor``
    on a machine with torchvision, like a hub checkpoint.
    """

    stock: type[ProcessorMixin]
    #: the stock video processor class, named in the saved config
    video_processor_type: str = "Qwen2VLVideoProcessor"

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        # ProcessorMixin zips positional args with get_attributes(), which this signature limits
        # to image_processor and tokenizer, so the video slot (None) is dropped.
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

    @classmethod
    def validate_init_kwargs(cls, processor_config, valid_kwargs):
        """On load, accept the stock processor's own settings too (its __init__ names them)."""
        stock = [key for key in inspect.signature(cls.stock.__init__).parameters
                 if key not in ("self", "video_processor", "args", "kwargs")]
        return super().validate_init_kwargs(processor_config, (*valid_kwargs, *stock))

    def to_dict(self) -> dict:
        """Serialise under the stock class name, with the video settings a stock load needs."""
        output = super().to_dict()
        output["processor_class"] = self.stock.__name__
        # The stock processor's own settings (e.g. InternVL's image_seq_length): ProcessorMixin
        # saves the parameters of ``__init__``, and this class's __init__ does not name them.
        for key in inspect.signature(self.stock.__init__).parameters:
            if key not in output and key not in ("self", "tokenizer", "chat_template") and key in vars(self):
                output[key] = copy.deepcopy(vars(self)[key])
        image = self.image_processor.to_dict()
        video = {key: image[key] for key in _SHARED_WITH_VIDEO if key in image}
        output["video_processor"] = {"video_processor_type": self.video_processor_type, **video}
        return output

    def save_pretrained(self, save_directory, **kwargs):
        """Save, then re-save the tokenizer so its config names the stock processor class too."""
        files = super().save_pretrained(save_directory, **kwargs)
        self.tokenizer._set_processor_class(self.stock.__name__)
        self.tokenizer.save_pretrained(save_directory)
        return files


class Qwen2VLImageOnlyProcessor(_ImageOnly, Qwen2VLProcessor):
    """Qwen2-VL processor for images only (no torchvision needed)."""

    stock = Qwen2VLProcessor


class Qwen2_5_VLImageOnlyProcessor(_ImageOnly, Qwen2_5_VLProcessor):
    """Qwen2.5-VL processor for images only (no torchvision needed)."""

    stock = Qwen2_5_VLProcessor


class Glm4vImageOnlyProcessor(_ImageOnly, Glm4vProcessor):
    """GLM-4.1V processor for images only (no torchvision needed)."""

    stock = Glm4vProcessor
    video_processor_type = "Glm4vVideoProcessor"


class InternVLImageOnlyProcessor(_ImageOnly, InternVLProcessor):
    """InternVL processor for images only (no torchvision needed)."""

    stock = InternVLProcessor
    video_processor_type = "InternVLVideoProcessor"


class LlavaOnevisionImageOnlyProcessor(_ImageOnly, LlavaOnevisionProcessor):
    """LLaVA-OneVision processor for images only (no torchvision needed)."""

    stock = LlavaOnevisionProcessor
    video_processor_type = "LlavaOnevisionVideoProcessor"


# model_type (config.json) -> the image-only fallback for it.
IMAGE_ONLY = {
    "qwen2_vl": Qwen2VLImageOnlyProcessor,
    "qwen2_5_vl": Qwen2_5_VLImageOnlyProcessor,
    "glm4v": Glm4vImageOnlyProcessor,
    "internvl": InternVLImageOnlyProcessor,
    "llava_onevision": LlavaOnevisionImageOnlyProcessor,
}


# Keyword arguments of from_pretrained that locate a checkpoint (the rest configure a processor).
_LOCATION_KWARGS = ("revision", "token", "cache_dir", "local_files_only", "subfolder", "trust_remote_code")


def model_type(path, **kwargs) -> str:
    """The checkpoint's ``model_type``, for a local folder or a hub id (revision etc. in kwargs)."""
    location = {key: value for key, value in kwargs.items() if key in _LOCATION_KWARGS}
    return AutoConfig.from_pretrained(path, **location).model_type


def load_processor(path, **kwargs) -> ProcessorMixin:
    """The stock processor if it can be built here, else its image-only one (``IMAGE_ONLY``).

    Where the video processor cannot be made (no torchvision, or no video settings in the
    folder), ``AutoProcessor`` raises ImportError or OSError, or quietly returns a bare tokenizer;
    each means "fall back". Models without an image-only fallback get the error: never a silent
    text-only run.
    """
    try:
        processor = AutoProcessor.from_pretrained(path, **kwargs)
    except (ImportError, OSError) as error:
        return _image_only(path, error, **kwargs)
    if isinstance(processor, ProcessorMixin):
        return processor
    problem = RuntimeError(f"AutoProcessor gave only a {type(processor).__name__} for {path}")
    return _image_only(path, problem, **kwargs)


def _image_only(path, problem: Exception, **kwargs) -> ProcessorMixin:
    """The image-only processor for ``path``'s model type, or ``problem`` raised if it has none."""
    kind = model_type(path, **kwargs)
    if kind not in IMAGE_ONLY:
        raise problem
    log.info("%s: stock processor unavailable (%s); using %s", path, problem, IMAGE_ONLY[kind].__name__)
    return IMAGE_ONLY[kind].from_pretrained(path, **kwargs)
