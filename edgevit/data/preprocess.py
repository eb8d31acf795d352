"""Turning images into model inputs, with numpy and PIL only (no torch).

The same code prepares photos for export verification and for ``Session.predict`` on a
device, so an artifact is checked with exactly the preprocessing it will be run with.

Example:
    >>> spec = PreprocessSpec(size=224)            # ImageNet mean/std, bicubic, crop 0.875
    >>> x = preprocess_image("cat.jpg", spec)        # float32 [3, 224, 224]
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgevit.artifact import INTERPOLATIONS, RESIZE_MODES
from edgevit.errors import DataError, InvalidArgumentError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PreprocessSpec:
    """How an image becomes the model's input.

    ``resize_mode``:
      * ``"crop"``: resize the shorter side to ``int(size / crop_pct)``, centre-crop ``size``.
      * ``"warp"``: resize directly to ``size x size``.
    Pixels are scaled to [0, 1], then normalised with ``mean``/``std``; the result is
    float32 ``[3, size, size]`` (channels first; ``layout="NHWC"`` gives ``[size, size, 3]``).
    """

    size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    resize_mode: str = "crop"
    layout: str = "NCHW"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.resize_mode not in RESIZE_MODES:
            raise InvalidArgumentError(f"resize_mode must be one of {RESIZE_MODES}, got {self.resize_mode!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise InvalidArgumentError(f"interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}")
        if self.layout not in ("NCHW", "NHWC"):
            raise InvalidArgumentError(f"layout must be NCHW or NHWC, got {self.layout!r}")

    @property
    def resize_size(self) -> int:
        """Shorter-side size before the centre crop (``size`` itself in warp mode)."""
        return self.size if self.resize_mode == "warp" else int(self.size / self.crop_pct)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["mean"], out["std"] = list(self.mean), list(self.std)
        out["resize"] = self.resize_size
        out["crop"] = self.size
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessSpec:
        known = {k: data[k] for k in ("size", "interpolation", "crop_pct", "resize_mode", "layout") if k in data}
        return cls(mean=tuple(data.get("mean", IMAGENET_MEAN)), std=tuple(data.get("std", IMAGENET_STD)), **known)


def load_image(image: str | Path | Any) -> Any:
    """Open a path, PIL image or HxWx3 uint8 array as an RGB PIL image.

    Every way one image can be unusable (missing, undecodable, a decompression bomb, empty,
    not an image at all) is a :class:`DataError` naming it, so that a batch can report it for
    that image and go on with the others.

    Raises:
        DataError: naming the file when it cannot be decoded.
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, Image.Image):
        _check_size(image.size, "the PIL image")
        return image.convert("RGB")
    if isinstance(image, np.ndarray):
        array = image
        if array.ndim == 2:
            array = np.stack([array] * 3, axis=-1)
        if array.ndim != 3 or array.shape[-1] not in (3, 4):
            raise DataError(f"an image array must be HxW or HxWx3, got shape {array.shape}")
        _check_size((array.shape[1], array.shape[0]), f"the image array of shape {array.shape}")
        if array.dtype != np.uint8:
            if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
                raise DataError(f"an image array must hold real numbers, got dtype {array.dtype}")
            if not np.isfinite(array).all():
                raise DataError("the image array holds NaN or infinite values")
            array = np.clip(array * (255.0 if array.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        return Image.fromarray(np.ascontiguousarray(array[..., :3]))
    if not isinstance(image, (str, Path)):
        raise DataError(f"an image must be a file path, a PIL image or an HxWx3 array, got {type(image).__name__}")
    path = Path(image)
    try:
        with Image.open(path) as img:
            _check_size(img.size, f"image {str(path)!r}")
            return img.convert("RGB")
    except FileNotFoundError as exc:
        raise DataError(f"image {str(path)!r} does not exist") from exc
    except Image.DecompressionBombError as exc:
        raise DataError(f"image {str(path)!r} is refused as a possible decompression bomb ({exc}); if it is a "
                        "genuine image this large, raise PIL.Image.MAX_IMAGE_PIXELS or resize it first") from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"cannot decode image {str(path)!r}: {exc}") from exc


def _check_size(size: tuple[int, int], what: str) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise DataError(f"{what} is empty ({width}x{height} pixels); an image needs at least 1x1")


def preprocess_image(image: str | Path | Any, spec: PreprocessSpec) -> np.ndarray:
    """One image to a float32 array ``[3, size, size]`` (or ``[size, size, 3]`` for NHWC)."""
    from PIL import Image

    img = load_image(image)
    method = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST}[spec.interpolation]
    if spec.resize_mode == "warp":
        img = img.resize((spec.size, spec.size), method)
    else:
        short = spec.resize_size
        width, height = img.size
        scale = short / min(width, height)
        new_w, new_h = max(short, round(width * scale)), max(short, round(height * scale))
        img = img.resize((new_w, new_h), method)
        left, top = (new_w - spec.size) // 2, (new_h - spec.size) // 2
        img = img.crop((left, top, left + spec.size, top + spec.size))
    array = np.asarray(img, dtype=np.float32) / 255.0
    array = (array - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return array if spec.layout == "NHWC" else np.ascontiguousarray(array.transpose(2, 0, 1))


def preprocess_images(images: Iterable[Any], spec: PreprocessSpec) -> np.ndarray:
    """A batch ``[N, 3, size, size]``; raises on the first image that cannot be decoded."""
    return np.stack([preprocess_image(image, spec) for image in images])


def sample_photos(names: tuple[str, ...] = ("astronaut", "chelsea", "coffee", "rocket")) -> list[tuple[str, np.ndarray]]:
    """Real photographs shipped inside scikit-image (no download): ``[(name, HxWx3 uint8)]``."""
    try:
        from skimage import data
    except ImportError as exc:
        raise DataError("sample photos need scikit-image: pip install 'edgevit[export]'") from exc
    return [(name, getattr(data, name)()) for name in names]
