from __future__ import annotations

import pytest

from edgevit.errors import InvalidArgumentError, UnknownNameError
from edgevit.registry import Registry


def test_register_get_and_list_with_globs():
    reg: Registry[object] = Registry("widget")

    @reg.register("alpha_one")
    def alpha_one():
        return 1

    reg.register("beta", "json:dumps")  # lazy
    assert reg.names() == ["alpha_one", "beta"]
    assert reg.names("a*") == ["alpha_one"]
    assert reg.get("alpha_one")() == 1
    import json

    assert reg.get("beta") is json.dumps
    assert "beta" in reg and len(reg) == 2


def test_duplicate_raises_unless_override():
    reg: Registry[int] = Registry("widget")
    reg.register("a", 1)
    with pytest.raises(InvalidArgumentError, match="already registered"):
        reg.register("a", 2)
    reg.register("a", 3, override=True)
    assert reg.get("a") == 3


def test_unknown_name_lists_closest():
    reg: Registry[int] = Registry("widget")
    for name in ("efficientformer_l1", "efficientformer_l3", "cas_vit_xs"):
        reg.register(name, 0)
    with pytest.raises(UnknownNameError) as info:
        reg.get("efficientformer_l2")
    text = str(info.value)
    assert "closest: efficientformer_l" in text and "efficientformer_l1" in text and "unknown widget" in text


def _registries() -> dict:
    from edgevit.export.targets import TARGETS
    from edgevit.models import MODELS
    from edgevit.precision import PRECISIONS
    from edgevit.quantize.base import QUANTIZERS
    from edgevit.runtime import BACKENDS
    from edgevit.split import STRATEGIES

    return {"target": TARGETS, "backend": BACKENDS, "quantizer": QUANTIZERS, "strategy": STRATEGIES, "model": MODELS,
            "precision": PRECISIONS}


@pytest.mark.parametrize(("kind", "name"), [(kind, name) for kind, registry in _registries().items()
                                            for name in registry.names()])
def test_every_registered_plugin_imports(kind, name):
    """A plugin whose module is broken fails here, by name, instead of being skipped somewhere."""
    assert _registries()[kind].get(name) is not None
