"""A prediction drawn for a person: where the predicted time goes, by kernel kind and by kernel.

Left: the predicted milliseconds of each kernel kind (all its kernels together), with its share
of the total. Right: the slowest kernels, each labelled with its shape and the ops it groups.
The title gives the total, the run overhead, the backend and the profile; a prediction that did
not cost every op says so (it is then a lower bound). matplotlib (Agg, no display) is imported
inside the function, so ``edgevit.predict`` stays numpy-only.
"""

from __future__ import annotations

from pathlib import Path

from edgevit._files import replacing
from edgevit.errors import require
from edgevit.predict.predictor import COSTED


def plot_prediction(prediction, path: str | Path, top: int = 12) -> Path:
    """Write the PNG of ``prediction`` (a :class:`~edgevit.predict.Prediction`) to ``path``.

    Example:
        >>> plot_prediction(predict("test_vit-onnx-fp32", profile), "test_vit.png")  # doctest: +SKIP
    """
    matplotlib = require("matplotlib", "bench", "plotting a prediction")
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    kinds = prediction.by_kind()
    rows = sorted((r for r in prediction.kernels if r.status in COSTED and r.kernel), key=lambda r: -r.ms)[:top]
    height = 1.6 + 0.32 * max(len(kinds), len(rows), 4)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, height), dpi=110, width_ratios=(1, 1.6))
    total = max(prediction.total_ms, 1e-12)
    names = list(reversed(kinds))
    left.barh(names, [kinds[n] for n in names], color="#4c8bd6")
    for y, name in enumerate(names):
        left.text(kinds[name], y, f" {kinds[name]:.2f} ms ({kinds[name] / total:.0%})", va="center", fontsize=8)
    left.set_xlabel("predicted ms, all kernels of a kind")
    left.set_title("by kernel kind", fontsize=10)
    labels = [f"{r.kernel.describe()}  {'+'.join(r.op_types)[:40]}" for r in reversed(rows)]
    right.barh(range(len(rows)), [r.ms for r in reversed(rows)], color="#e08a3c")
    right.set_yticks(range(len(rows)), labels, fontsize=7)
    right.set_xlabel("predicted ms")
    right.set_title(f"the {len(rows)} slowest kernels", fontsize=10)
    for ax in (left, right):
        ax.margins(x=0.35)
        ax.spines[["top", "right"]].set_visible(False)
    note = "" if prediction.complete else "  (not every op costed: a lower bound)"
    fig.suptitle(f"predicted {prediction.total_ms:.2f} ms = run {prediction.run_ms:.2f} ms + kernels; "
                 f"{prediction.backend}{note}\n{prediction.profile}", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with replacing(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
