"""int8 ONNX on the kernel paths of CPUs other than this one.

onnxruntime multiplies uint8 activations by int8 weights with ``VPMADDUBSW`` on x86 CPUs
without VNNI, which saturates its int16 pair sums (edgevit.runtime.cpu). Two checks, so that
the AVX2 path is covered on every test machine and not only on AVX2 ones:

* the **instruction, emulated**: every integer kernel's real weights from the quantized file,
  multiplied with uint8 activations as VPMADDUBSW does (adjacent pairs summed and saturated to
  int16, then accumulated in int32), against the exact int32 dot product;
* the **kernels of this machine**, run: the file through onnxruntime's integer kernels against
  the same QDQ graph computed in float. On an AVX2-only machine this runs the saturating path
  for real; on a VNNI machine it shows every format exact, and the emulation covers AVX2.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_quantize_targets import MIN_KERNEL_SQNR_DB

from edgevit.models import list_models
from edgevit.quantize import Recipe, quantize
from edgevit.quantize.onnx import INT8_FORMATS, optimized_graph
from edgevit.runtime.cpu import int8_path

pytestmark = pytest.mark.slow  # every ONNX int8 format of every test model, quantized and run

INT16 = (-(2**15), 2**15 - 1)


def vpmaddubsw_dot(activations: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``activations @ weights.T`` as VPMADDUBSW + VPMADDWD compute it: uint8 x int8 products of
    adjacent pairs along K summed and saturated to int16, the pair sums then added in int32.

    Args:
        activations: ``[M, K]`` uint8; weights: ``[N, K]`` int8 (K even).
    """
    products = activations.astype(np.int32)[:, None, :] * weights.astype(np.int32)[None, :, :]
    pairs = products[..., 0::2] + products[..., 1::2]
    return np.clip(pairs, *INT16).sum(axis=-1)


def test_the_emulation_saturates_where_the_instruction_does():
    ones = np.full((1, 4), 255, np.uint8)
    assert vpmaddubsw_dot(ones, np.full((1, 4), 64, np.int8))[0, 0] == 4 * 255 * 64          # 32,640 per pair fits
    assert vpmaddubsw_dot(ones, np.full((1, 4), 127, np.int8))[0, 0] == 2 * 32767            # 64,770 per pair does not
    assert vpmaddubsw_dot(ones, np.full((1, 4), -128, np.int8))[0, 0] == 2 * -32768


def _integer_kernel_weights(path) -> list[np.ndarray]:
    """``[N, K]`` int8 weights of every integer kernel onnxruntime runs for the file."""
    from onnx import numpy_helper

    from edgevit.quantize.onnx import INTEGER_OPS

    graph = optimized_graph(path)
    initializers = {init.name: init for init in graph.initializer}
    weights = []
    for node in graph.node:
        for name in node.input:
            if node.op_type in INTEGER_OPS and name in initializers and len(initializers[name].dims) >= 2:
                array = numpy_helper.to_array(initializers[name])
                if array.dtype == np.int8:
                    # conv weights are [N, C, kh, kw]; MatMul-style weights [K, N] unless transposed
                    transposed = any(a.name == "transB" and a.i for a in node.attribute)
                    matrix = array.reshape(len(array), -1) if array.ndim == 4 or transposed else array.T
                    weights.append(matrix[:, : matrix.shape[1] // 2 * 2])
    return weights


@pytest.mark.parametrize("fmt", list(INT8_FORMATS))
@pytest.mark.parametrize("model", list_models("test_*"))
def test_each_format_on_the_avx2_path_and_on_this_cpu(model, fmt, float_file, trained, calibration, tmp_path):
    out = tmp_path / "model.onnx"
    result = quantize("onnx", float_file(model, "onnx"), out, calibration(model), Recipe("int8", calib_size=16),
                      model=trained(model), sensitivity=False, options={"onnx_int8_format": fmt})
    record = result.kernels["u8s8_saturation"]
    assert result.recipe.options["int8_format"] == fmt
    assert record["free"] == INT8_FORMATS[fmt].saturation_free, record

    # the instruction, emulated on the file's own weights: worst-case (all 255) and random activations
    rng = np.random.default_rng(0)
    weights = _integer_kernel_weights(out)
    assert bool(weights) == (fmt != "u8u8")  # u8u8 stores uint8 weights, which never meet VPMADDUBSW
    saturated = 0
    for matrix in weights:
        activations = np.concatenate([np.full((1, matrix.shape[1]), 255, np.uint8),
                                      rng.integers(0, 256, (3, matrix.shape[1]), dtype=np.uint8)])
        exact = activations.astype(np.int64) @ matrix.T.astype(np.int64)
        saturated += int(np.any(vpmaddubsw_dot(activations, matrix) != exact))
    assert (saturated == 0) == record["free"], (saturated, len(weights), record)

    # this machine's kernels, run: exact unless the format can saturate and this CPU does
    sqnr = result.kernels["kernels_vs_qdq_reference"]["sqnr_db"]
    if record["free"] or int8_path().u8s8_saturates is False:
        assert sqnr >= MIN_KERNEL_SQNR_DB, (sqnr, int8_path())
    elif int8_path().u8s8_saturates:
        assert sqnr < 25.0, (sqnr, int8_path())  # if this fails, the CPU model in edgevit.runtime.cpu is wrong
