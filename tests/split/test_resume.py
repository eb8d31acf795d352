"""An interrupted split resumes from its finished sub-models (issue 17, finding 8)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from edgevit.split.options import SplitOptions
from edgevit.split.pruners import FfnPruner, VitPruner
from edgevit.split.resume import SubModelStore, resume_folder


def _request(model, train_set, spec, **options):
    return SimpleNamespace(model=model, model_name=model.model_name, train_set=train_set, spec=spec,
                           options=SplitOptions(**options))


@pytest.mark.parametrize(("name", "pruner"), [("test_vit", VitPruner()), ("test_cas_vit", FfnPruner())],
                         ids=["vit", "ffn"])
def test_a_saved_sub_model_loads_back_identical(tmp_path, digits6, spec, name, pruner):
    from edgevit.models import create_model, model_info

    model = create_model(name, num_classes=6)
    group = (0, 1, 2)
    size = model_info(name).image_size
    images = np.random.default_rng(0).standard_normal((16, 3, size, size)).astype(np.float32)
    sub = pruner.prune(pruner.group_model(model, list(group)), images, 0.5, reference=model)
    store = SubModelStore(tmp_path / "resume", _request(model, digits6[0], spec))
    assert store.load(pruner, model, group, 0.5) is None
    store.save(pruner, sub, group, 0.5)

    loaded = SubModelStore(tmp_path / "resume", _request(model, digits6[0], spec)).load(pruner, model, group, 0.5)
    batch = torch.from_numpy(images[:4])
    with torch.no_grad():
        assert torch.equal(loaded(batch), sub(batch))
    assert pruner.describe(loaded) == pruner.describe(sub)
    # anything that decides the sub-model is in the key: another seed or ratio is not reused
    assert SubModelStore(tmp_path / "resume", _request(model, digits6[0], spec, seed=1)).load(
        pruner, model, group, 0.5) is None
    assert store.load(pruner, model, group, 0.4) is None


def test_a_damaged_entry_is_rebuilt_not_trusted(tmp_path, digits6, spec):
    from edgevit.models import create_model

    model, pruner, group = create_model("test_vit", num_classes=6, image_size=spec.size), VitPruner(), (0, 1)
    sub = pruner.group_model(model, list(group))
    store = SubModelStore(tmp_path / "resume", _request(model, digits6[0], spec))
    store.save(pruner, sub, group, 1.0)
    next((tmp_path / "resume").glob("*.safetensors")).write_bytes(b"not safetensors")
    assert store.load(pruner, model, group, 1.0) is None


@pytest.mark.slow
def test_an_interrupted_split_resumes_from_its_finished_sub_models(tmp_path, base_vit, spec):
    """A real ``edgevit split`` process, interrupted with SIGINT after its first sub-model, then run again."""
    from edgevit.train import save_weights

    weights = save_weights(base_vit, tmp_path / "w.safetensors", labels=[str(c) for c in range(6)],
                           metadata={"image_size": str(spec.size)})
    data = tmp_path / "six"
    from PIL import Image

    from edgevit.data.datasets import load_dataset

    for split_name in ("train", "val"):
        dataset = load_dataset("digits", split_name).with_classes([0, 1, 2, 3, 4, 5])
        for i, (item, label) in enumerate(zip(dataset.items, dataset.labels)):
            folder = data / split_name / dataset.classes[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.asarray(item)).save(folder / f"{i}.png")
    devices = tmp_path / "devices.toml"
    entry = '[[device]]\nname = "d{}"\nmemory_mb = 64\nspeed = 1.0\nlink_mbps = 100\nlink_latency_ms = 1.0\n'
    devices.write_text("".join(entry.format(i) for i in range(3)))
    out = tmp_path / "plan"
    command = [sys.executable, "-m", "edgevit", "split", "test_vit", "--weights", str(weights), "--data", str(data),
               "--devices", str(devices), "--out", str(out), "--reduction", "4", "--prune-steps", "1",
               "--recover-epochs", "1", "--fusion-epochs", "3", "--threads", "1", "--no-verify"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # a shell's background job (`cmd &`) starts with SIGINT ignored, and Python keeps an ignored SIGINT
    # (no KeyboardInterrupt): the split is run as from a terminal, with SIGINT at its default
    first = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines, deadline = [], time.monotonic() + 600
    for line in first.stderr:
        lines.append(line)
        if "sub0 done" in line or time.monotonic() > deadline:
            break
    first.send_signal(signal.SIGINT)
    _, rest = first.communicate(timeout=120)
    err = "".join(lines) + rest
    assert first.returncode == 130, err
    assert "run the same split again to resume from them" in err and err.rstrip().endswith("Interrupted")
    kept = resume_folder(out)
    assert len(list(kept.glob("*.safetensors"))) >= 1 and not out.exists()

    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert second.returncode == 0, second.stderr
    assert "sub0 of 3: classes [0, 1], keep ratio" in second.stderr and "loaded, finished before the split was interrupted" \
        in second.stderr
    assert "sub1 of 3: classes [2, 3], keep ratio" in second.stderr
    assert (out / "plan.json").is_file() and not kept.exists()
