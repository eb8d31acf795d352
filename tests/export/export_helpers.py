"""What the export tests are parametrized over: the model and target registries."""

from __future__ import annotations


def family_models() -> list[str]:
    """Each family's tiny ``test_*`` model."""
    from edgevit.models import list_models

    return list_models("test_*")


def cells() -> list[tuple[str, str, str]]:
    """(model, target, precision) for every test model, target and precision the target offers."""
    from edgevit.export import TARGETS

    return [(model, target, precision) for model in family_models() for target in TARGETS.names()
            for precision in TARGETS.get(target).precisions]
