"""``edgevit train`` and ``edgevit eval`` end to end on the bundled digits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from safetensors import safe_open

from edgevit.cli import main


def test_train_then_eval_a_zoo_model(tmp_path, capsys):
    out = tmp_path / "vit.safetensors"
    metrics = tmp_path / "metrics.json"
    code = main(["train", "test_vit", "--data", "digits", "--epochs", "1", "--threads", "1", "--quiet",
                 "--out", str(out), "--json", str(metrics)])
    printed = capsys.readouterr().out
    assert code == 0 and out.is_file()
    assert "1438 training images, 10 classes, validation top-1" in printed
    recorded = json.loads(metrics.read_text())  # --json: the metrics file (issue 17, finding 12)
    assert recorded["weights"] == str(out) and recorded["epochs"] == 1 and len(recorded["history"]) == 1
    assert f"validation top-1 {recorded['final_val_top1']:.2f}%" in printed and recorded["seconds"] > 0
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


def test_unwritable_outputs_are_refused_before_any_work(tmp_path, capsys):
    """Every output path is proved writable before training, benchmarking, evaluating or
    splitting: the bad --data/artifact/devices given with it is never reached (issue 17 #4).
    The folder is a file, which stops root too."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    nowhere = str(tmp_path / "no-such-data")
    cases = [
        (["train", "test_vit", "--data", nowhere, "--out", str(blocker / "w.safetensors")], "--out"),
        (["eval", "test_vit", "--data", nowhere, "--json", str(blocker / "r.json")], "--json"),
        (["bench", str(tmp_path / "no-artifact"), "--plot", str(blocker / "p.png")], "--plot"),
        (["bench", str(tmp_path / "no-artifact"), "--json", str(tmp_path)], "--json"),
        (["split", "test_vit", "--data", nowhere, "--devices", str(tmp_path / "none.toml"),
          "--out", str(blocker / "plan")], "--out"),
    ]
    for argv, expected in cases:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert expected in err and "a-file" in err or "is a folder" in err, (argv, err)
        assert err.count("\n") == 1, err  # one line, no traceback


def test_a_finished_result_that_cannot_be_written_is_saved_elsewhere_and_said(tmp_path):
    import pytest

    from edgevit._files import write_or_rescue
    from edgevit.errors import EdgeVitError

    target = tmp_path / "gone" / "weights.safetensors"

    def write(where: Path) -> None:
        if where == target:
            raise OSError(28, "No space left on device")
        where.write_text("trained")

    with pytest.raises(EdgeVitError) as info:
        write_or_rescue(target, write)
    message = str(info.value)
    assert "No space left on device" in message and "saved to" in message
    saved = message.split("saved to ")[1].split(" instead")[0]
    assert Path(saved).read_text() == "trained"


def test_eval_on_a_folder_says_which_part_it_scored(tmp_path, capsys):
    folder = tmp_path / "pics"
    rng = np.random.default_rng(0)
    for name in [str(i) for i in range(10)]:
        (folder / name).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / name / f"{i}.png")
    assert main(["eval", "test_vit", "--data", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "(val, 10 images)" in out and "a fixed 20% of each class" in out and "--split all" in out
    assert main(["eval", "test_vit", "--data", str(folder), "--split", "all"]) == 0
    out = capsys.readouterr().out
    assert "(all, 50 images)" in out and "a fixed" not in out
