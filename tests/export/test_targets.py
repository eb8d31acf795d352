"""Every family's ``test_*`` model through every target and precision (parametrized over the
model and target registries): the artifact is whole, its manifest says what it is, and its
numbers were checked against PyTorch within the precision's tolerance."""

from __future__ import annotations

import numpy as np
import pytest
from export_helpers import cells, family_models

from edgevit.artifact import read_manifest
from edgevit.export.targets import get_target
from edgevit.export.verify import TOLERANCES
from edgevit.models import model_info

pytestmark = pytest.mark.slow  # every test model to every target and precision: full conversions

#: targets whose artifacts must be numerically verified on this machine
NUMERIC_TARGETS = {"onnx", "tflite", "executorch"}


@pytest.mark.parametrize(("model", "target", "precision"), cells())
def test_export_writes_a_verified_artifact(exported, model, target, precision):
    result = exported(model)
    outcome = result[(target, precision)]
    assert outcome.error is None, f"{model} -> {target} {precision}: {outcome.error}"
    path = outcome.artifact.path
    assert path.name == f"{model}-{target}-{precision}"
    manifest = read_manifest(path)
    info = model_info(model)
    size = info.image_size

    assert manifest.model["name"] == model and manifest.model["family"] == info.family
    assert manifest.model["num_classes"] == info.num_classes
    assert (manifest.target, manifest.precision) == (target, precision)
    spec = manifest.inputs[0]
    assert (spec.name, spec.shape, spec.dtype, spec.layout) == ("input", (1, 3, size, size), "float32", "NCHW")
    assert manifest.outputs[0].shape == (1, info.num_classes)
    assert manifest.preprocessing == info.preprocess.spec(size).to_dict()
    assert manifest.weights == {"path": None, "sha256": None, "note": "random init"}
    assert manifest.converter["torch"].startswith("2.")
    on_disk = {str(p.relative_to(path)): p.stat().st_size for p in path.rglob("*")
               if p.is_file() and p.name != "manifest.json"}
    assert manifest.files == on_disk and all(size > 0 for size in on_disk.values())
    assert not [name for name in on_disk if "executorch_debug" in name], "coremltools' debug map left in"  # issue 17, 14
    assert manifest.ops["histogram"] and sum(manifest.ops["histogram"].values()) == manifest.ops["total"]

    verification = manifest.verification
    tolerance = TOLERANCES[precision]
    if target in NUMERIC_TARGETS:
        assert verification["numbers_checked"], verification.get("note")
    if verification["numbers_checked"]:
        assert verification["status"] == "passed", verification["failures"]
        metrics = verification["outputs"]["logits"]
        assert metrics["max_rel_err"] <= tolerance.max_rel_err
        assert metrics["min_cosine"] >= tolerance.min_cosine
        assert metrics["top1_agreement"] >= tolerance.min_top1
        assert verification["samples"]["random"] >= 2 and len(verification["samples"]["photos"]) >= 2
    else:
        assert verification["status"] == "structural"
        assert "numbers were NOT checked" in verification["note"]
    assert not [p.name for p in result["out"].iterdir() if p.name.startswith(".")], "staging folders left behind"


@pytest.mark.parametrize("model", family_models())
def test_artifacts_reproduce_pytorch_on_a_fresh_input(exported, model):
    """Independently of the export's own check: run each artifact on a new input with the runtime."""
    import torch

    from edgevit.models import create_model
    from edgevit.runtime import load

    info = model_info(model)
    x = torch.randn(1, *info.input_size, generator=torch.Generator().manual_seed(123))
    with torch.no_grad():
        expected = create_model(model)(x).numpy()
    checked = 0
    for key, outcome in exported(model).items():
        if key == "out" or not outcome.ok or not outcome.artifact.verification.get("numbers_checked"):
            continue
        verification = outcome.artifact.verification
        with load(outcome.artifact.path, backend=verification["backend"]) as session:
            logits = session.run({"input": x.numpy()})["logits"]
        error = np.abs(logits - expected).max() / np.abs(expected).max()
        assert error <= TOLERANCES[outcome.precision].max_rel_err, f"{key}: relative error {error:.3g}"
        checked += 1
    assert checked >= sum(len(get_target(target).precisions) for target in NUMERIC_TARGETS)


@pytest.mark.parametrize("model", family_models())
def test_fp16_artifacts_store_half_the_weights(exported, model):
    result = exported(model)
    for target in {t for t, p in (k for k in result if k != "out") if p == "fp16"}:
        fp32, fp16 = result[(target, "fp32")].artifact, result[(target, "fp16")].artifact
        assert fp16.size_bytes < 0.8 * fp32.size_bytes, f"{target}: fp16 {fp16.size_bytes} vs fp32 {fp32.size_bytes}"


@pytest.mark.parametrize("model", family_models())
def test_artifacts_have_the_permissions_of_any_new_file(exported, model):
    """No private (0600/0700) files or folders inside an artifact: converters and tempfile make
    them, edgevit's install step gives the whole tree the umask's permissions (issue 17 #14)."""
    from edgevit._files import umask

    mask = umask()
    for key, outcome in exported(model).items():
        if key == "out" or not outcome.ok:
            continue
        root = outcome.artifact.path
        for item in [root, *root.rglob("*")]:
            if item.is_symlink():
                continue
            mode = item.stat().st_mode & 0o777
            expected = 0o777 & ~mask if item.is_dir() or mode & 0o111 else 0o666 & ~mask
            assert mode == expected, f"{key}: {item.relative_to(root.parent)} has mode {mode:o}, not {expected:o}"
