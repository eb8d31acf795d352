"""The zoo's catalogue (issue 17, finding 12): listing and looking up models needs no torch,
and the catalogue says exactly what the models themselves say."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edgevit.models import MODELS, ModelInfo, list_models, model_info
from edgevit.models._catalog import CATALOG, build, render


def test_catalogue_is_what_the_models_say():
    """Fails when a model's params, GMACs, size, preprocessing or split points changed and the
    catalogue was not regenerated (``python -c "from edgevit.models._catalog import main; main()"``)."""
    assert build() == CATALOG


def test_render_round_trips(tmp_path):
    source = render(CATALOG)
    namespace: dict = {}
    exec(compile(source, "catalogue", "exec"), namespace)  # noqa: S102 - our own generated source
    assert namespace["CATALOG"] == CATALOG


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_info_round_trips_through_a_dict(name):
    info = ModelInfo.from_dict(CATALOG[name]["info"])
    assert info.to_dict() == CATALOG[name]["info"]
    assert info == model_info(name)


def _fresh(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_listing_and_looking_up_models_imports_no_torch():
    result = _fresh(
        "import sys, json\n"
        "from edgevit.models import list_models, model_info, MODELS\n"
        "from edgevit.errors import UnknownNameError\n"
        "names = list_models('*')\n"
        "info = model_info('vit_tiny_patch16_224')\n"
        "try:\n"
        "    model_info('vit_tiny_patch16_244')\n"
        "except UnknownNameError as exc:\n"
        "    hint = str(exc)\n"
        "from edgevit.cli import main\n"
        "main(['models', '--json', 'cas*'])\n"
        "print('RESULT', json.dumps([len(names), list(info.split_points[:2]), 'vit_tiny_patch16_224' in hint,"
        " 'torch' in sys.modules]))\n"
    )
    assert result.returncode == 0, result.stderr
    line = next(row for row in result.stdout.splitlines() if row.startswith("RESULT"))
    count, points, hinted, torch_loaded = json.loads(line.removeprefix("RESULT "))
    assert count == len(CATALOG) and points == ["patch_embed", "blocks.0"] and hinted
    assert torch_loaded is False


def test_building_a_model_replaces_the_lazy_entry():
    from edgevit.models import create_model

    assert create_model("test_vit").model_name == "test_vit"
    assert not MODELS.is_lazy("test_vit")
    assert model_info("test_vit") == ModelInfo.from_dict(CATALOG["test_vit"]["info"])
    assert "test_vit" in list_models("test_*")
