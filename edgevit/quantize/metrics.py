"""How far quantized logits are from float logits (numpy only).

* SQNR (signal-to-quantization-noise ratio) in dB: ``10 log10(sum(ref^2) / sum((ref - q)^2))``
  over all images; 30 dB means the noise carries a thousandth of the signal's power.
* Cosine similarity per image (the lowest and the mean are reported).
* Top-1 agreement: the share of images whose arg-max class is the same, in percent.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: SQNR reported for identical outputs (no noise at all)
MAX_SQNR_DB = 200.0


def sqnr_db(reference: np.ndarray, actual: np.ndarray) -> float:
    ref = np.asarray(reference, np.float64)
    noise = float(np.sum((ref - np.asarray(actual, np.float64)) ** 2))
    signal = float(np.sum(ref**2))
    if noise == 0.0:
        return MAX_SQNR_DB
    if signal == 0.0 or not np.isfinite(noise):
        return -MAX_SQNR_DB
    return float(min(10.0 * np.log10(signal / noise), MAX_SQNR_DB))


def cosines(reference: np.ndarray, actual: np.ndarray) -> np.ndarray:
    ref = np.asarray(reference, np.float64).reshape(len(reference), -1)
    act = np.asarray(actual, np.float64).reshape(len(actual), -1)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(act, axis=1)
    return np.where(norms > 0, (ref * act).sum(axis=1) / np.where(norms > 0, norms, 1.0), 1.0)


def top1_agreement(reference: np.ndarray, actual: np.ndarray) -> float:
    """Percent of rows with the same arg-max."""
    return float((np.argmax(reference, axis=1) == np.argmax(actual, axis=1)).mean() * 100.0)


def compare_logits(reference: np.ndarray, actual: np.ndarray) -> dict[str, Any]:
    """SQNR, cosine (min, mean) and top-1 agreement of ``actual`` against ``reference``."""
    cos = cosines(reference, actual)
    return {
        "sqnr_db": round(sqnr_db(reference, actual), 2),
        "min_cosine": round(float(cos.min()), 6),
        "mean_cosine": round(float(cos.mean()), 6),
        "top1_agreement": round(top1_agreement(reference, actual), 2),
        "images": int(len(reference)),
    }
