"""``edgevit train`` and ``edgevit eval`` end to end on the bundled digits."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image
from safetensors import safe_open

from edgevit.cli import main


def test_train_then_eval_a_zoo_model(tmp_path, capsys):
    out = tmp_path / "vit.safetensors"
    code = main(["train", "test_vit", "--data", "digits", "--epochs", "1", "--threads", "1", "--quiet",
                 "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and out.is_file()
    assert "1438 training images, 10 classes, validation top-1" in printed
    with safe_open(str(out), "pt") as f:
        meta = f.metadata()
    assert json.loads(meta["labels"]) == [str(i) for i in range(10)] and meta["model"] == "test_vit"
    trained_top1 = float(printed.split("validation top-1 ")[1].split("%")[0])

    result = tmp_path / "eval.json"
    assert main(["eval", "test_vit", "--weights", str(out), "--data", "digits", "--json", str(result)]) == 0
    printed = capsys.readouterr().out
    assert "test_vit on digits (val, 359 images): top-1" in printed
    numbers = json.loads(result.read_text())
    assert numbers["count"] == 359 and abs(numbers["top1"] - trained_top1) < 0.006  # same images, same model


def test_bad_train_and_eval_inputs_say_what_is_wrong(tmp_path, capsys):
    assert main(["train", "test_vit", "--data", "digits", "--out", str(tmp_path / "w.pt")]) == 1
    assert "--out must end in .safetensors" in capsys.readouterr().err
    assert main(["train", "test_vit", "--data", str(tmp_path / "nowhere")]) == 1
    assert "neither 'digits' nor an existing folder" in capsys.readouterr().err
    folder = tmp_path / "two"
    for name in ("cat", "dog"):
        (folder / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(folder / name / f"{i}.png")
    assert main(["eval", "test_vit", "--data", str(folder)]) == 1  # 10 classes vs 2
    assert "the model has 10 classes but the dataset" in capsys.readouterr().err
