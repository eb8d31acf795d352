"""Model metadata as frozen value objects, and the model registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgevit.data.preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessSpec
from edgevit.registry import Registry


@dataclass(frozen=True)
class Preprocess:
    """How a model's images are prepared (everything but the size; see PreprocessSpec).

    ``resize_mode``: ``"crop"`` resizes the shorter side to ``int(size / crop_pct)`` and
    centre-crops; ``"warp"`` resizes straight to ``size x size``.
    """

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    resize_mode: str = "crop"

    def spec(self, size: int, layout: str = "NCHW") -> PreprocessSpec:
        """The full preprocessing for ``size`` pixels (what export writes to the manifest)."""
        return PreprocessSpec(size=size, mean=self.mean, std=self.std, interpolation=self.interpolation,
                              crop_pct=self.crop_pct, resize_mode=self.resize_mode, layout=layout)


@dataclass(frozen=True)
class ModelInfo:
    """What is known of a registered model, without building it.

    ``params`` and ``gmacs`` are for the default build (``num_classes`` classes, default
    size, no distillation head unless ``has_dist_head``); a registry test recomputes both.
    ``paper_params_m`` / ``paper_gmacs`` are the published figures they are checked against.
    """

    name: str
    family: str
    paper: str
    input_size: tuple[int, int, int]
    params: int
    gmacs: float
    fixed_size: bool
    size_multiple: int = 32
    allowed_sizes: tuple[int, ...] | None = None
    num_classes: int = 1000
    has_dist_head: bool = False
    paper_params_m: float | None = None
    paper_gmacs: float | None = None
    preprocess: Preprocess = field(default_factory=Preprocess)
    is_test: bool = False
    split_points: tuple[str, ...] = ()

    @property
    def image_size(self) -> int:
        return self.input_size[-1]

    @property
    def mean(self) -> tuple[float, float, float]:
        return self.preprocess.mean

    @property
    def std(self) -> tuple[float, float, float]:
        return self.preprocess.std

    def size_policy(self) -> str:
        """A sentence saying which input sizes a build of this model can take."""
        if self.allowed_sizes:
            return f"only {', '.join(str(s) for s in self.allowed_sizes)} pixels"
        fixed = " (fixed once built)" if self.fixed_size else ""
        return f"square sizes that are multiples of {self.size_multiple}{fixed}"

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelInfo:
        """The inverse of :meth:`to_dict` (tuples restored)."""
        def tuples(value: Any) -> Any:
            return tuple(value) if isinstance(value, list) else value

        fields = {key: tuples(value) for key, value in data.items() if key != "preprocess"}
        preprocess = Preprocess(**{key: tuples(value) for key, value in data["preprocess"].items()})
        return cls(**fields, preprocess=preprocess)


ModelFactory = Callable[..., Any]
MODELS: Registry[ModelFactory] = Registry("model")


def register_model(info: ModelInfo) -> Callable[[ModelFactory], ModelFactory]:
    """Register a factory ``f(num_classes=..., image_size=...) -> nn.Module`` with its info.

    Example:
        >>> @register_model(ModelInfo(name="vit_tiny_patch16_224", family="vit", ...))
        ... def vit_tiny_patch16_224(**kwargs):
        ...     return VisionTransformer(embed_dim=192, depth=12, num_heads=3, **kwargs)
    """

    def decorator(factory: ModelFactory) -> ModelFactory:
        # a zoo model is listed in the catalogue (lazily, by "module:attr") before its family
        # module is imported; importing it puts the factory in that entry's place
        MODELS.register(info.name, factory, meta=info, override=MODELS.is_lazy(info.name))
        return factory

    return decorator
