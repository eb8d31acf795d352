"""Reading packages: bad input gets one clear error, the weight format, torch-free loading."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgevit.errors import ArtifactError, RuntimeInputError, UnsupportedOpError
from edgevit.runtime import load
from edgevit.runtime.backends.coreml_reference import CoreMLReferenceBackend
from edgevit.runtime.backends.coreml_reference.blob import METADATA, WeightFile, unpack_bits

W = np.random.default_rng(0).standard_normal((8, 6)).astype(np.float32)


def _linear(mb, x):
    return mb.relu(x=mb.linear(x=x, weight=W, bias=np.arange(8, dtype=np.float32)))


@pytest.fixture(scope="module")
def linear_package(save_program) -> Path:
    return save_program(_linear, [np.zeros((2, 6), np.float32)], 16)


@pytest.fixture
def package_copy(linear_package, tmp_path) -> Path:
    copy = tmp_path / "copy.mlpackage"
    shutil.copytree(linear_package, copy)
    return copy


def _spec_file(package: Path) -> Path:
    return package / "Data" / "com.apple.CoreML" / "model.mlmodel"


def _weight_file(package: Path) -> Path:
    return package / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"


def _edit_spec(package: Path, edit) -> None:
    from edgevit.runtime.backends.coreml_reference._proto import load_proto

    spec = load_proto("Model_pb2").Model()
    spec.ParseFromString(_spec_file(package).read_bytes())
    edit(spec)
    _spec_file(package).write_bytes(spec.SerializeToString())


def _retarget(spec, opset: str) -> None:
    """Claim another opset for ``main`` (what a hand-edited or future package would hold)."""
    function = spec.mlProgram.functions["main"]
    block = function.block_specializations[function.opset]
    function.block_specializations[opset].CopyFrom(block)
    del function.block_specializations[function.opset]
    function.opset = opset


# -- a good package ------------------------------------------------------------------------------


def test_load_runs_a_package_and_auto_picks_the_reference_backend(linear_package):
    x = np.random.default_rng(1).standard_normal((2, 6)).astype(np.float32)
    with load(linear_package) as session:
        assert session.backend == "coreml-reference"
        (output,) = session.run({session.input_specs[0].name: x}).values()
    np.testing.assert_allclose(output, np.maximum(x @ W.T + np.arange(8), 0), rtol=1e-6, atol=1e-6)


def test_threads_limit_the_blas_pool_while_running(linear_package):
    from threadpoolctl import threadpool_info

    seen = []
    with load(linear_package, backend="coreml-reference", threads=1) as session:
        assert session.backend_model.threads == 1
        program = session.backend_model.program
        run = program.run
        program.run = lambda feeds, profile=None: seen.append([p["num_threads"] for p in threadpool_info()
                                                               if p["user_api"] == "blas"]) or run(feeds, profile)
        session.run({session.input_specs[0].name: np.ones((2, 6), np.float32)})
    assert seen and all(n == 1 for n in seen[0])


def test_wrong_input_shape_is_a_runtime_input_error(linear_package):
    model = CoreMLReferenceBackend().open(linear_package, None)
    with pytest.raises(RuntimeInputError, match=r"shape \[3, 6\].*float32\[2, 6\]"):
        model.run({model.input_specs[0].name: np.zeros((3, 6), np.float32)})


def test_loading_and_running_never_imports_torch_or_coremltools(linear_package):
    code = (
        "import sys, numpy as np\n"
        "from edgevit.runtime import load\n"
        f"with load({str(linear_package)!r}, backend='coreml-reference') as s:\n"
        "    out = s.run({s.input_specs[0].name: np.ones((2, 6), np.float32)})\n"
        "print('HEAVY', sorted(m for m in ('torch', 'coremltools') if m in sys.modules), len(out))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "HEAVY [] 1" in result.stdout, result.stdout


# -- unsupported ops and versions ------------------------------------------------------------------


def test_an_unimplemented_op_names_itself_its_opset_and_its_output(save_program):
    path = save_program(lambda mb, x: mb.add(x=x, y=mb.random_uniform(shape=np.array([2, 5], np.int32))),
                        [np.zeros((2, 5), np.float32)], 16)
    with pytest.raises(UnsupportedOpError) as info:
        load(path, backend="coreml-reference")
    message = str(info.value)
    assert "'random_uniform'" in message and "CoreML6" in message and "iOS16" in message
    assert "random_uniform_0" in message


def test_an_op_used_in_an_opset_it_has_no_definition_for_is_refused(save_program, tmp_path):
    path = save_program(lambda mb, x: mb.scaled_dot_product_attention(query=x, key=x, value=x),
                        [np.zeros((1, 2, 4, 8), np.float32)], 18)
    edited = tmp_path / "edited.mlpackage"
    shutil.copytree(path, edited)
    _edit_spec(edited, lambda spec: _retarget(spec, "CoreML7"))
    with pytest.raises(UnsupportedOpError, match=r"scaled_dot_product_attention.*CoreML7 \(iOS17\).*iOS18"):
        load(edited, backend="coreml-reference")


def test_an_unknown_opset_is_refused(package_copy):
    _edit_spec(package_copy, lambda spec: _retarget(spec, "CoreML99"))
    with pytest.raises(UnsupportedOpError, match="CoreML99"):
        load(package_copy, backend="coreml-reference")


def test_a_result_that_disagrees_with_the_declared_shape_stops_the_run(save_program):
    # coremltools declares (1, 3) for vector @ (10, 4, 3); MIL's own documentation says (10, 3)
    path = save_program(lambda mb, x, y: mb.matmul(x=x, y=y),
                        [np.ones(4, np.float32), np.ones((10, 4, 3), np.float32)], 16)
    model = CoreMLReferenceBackend().open(path, None)
    names = [spec.name for spec in model.input_specs]
    with pytest.raises(UnsupportedOpError, match=r"matmul.*computed a \[10, 3\] tensor.*declares float32\[1, 3\]"):
        model.run(dict(zip(names, [np.ones(4, np.float32), np.ones((10, 4, 3), np.float32)])))


# -- corrupt and truncated packages --------------------------------------------------------------


def _truncate(path: Path, keep: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


CORRUPTIONS = {
    "no-manifest": (lambda p: (p / "Manifest.json").unlink(), "no Manifest.json"),
    "garbage-manifest": (lambda p: (p / "Manifest.json").write_text("{not json"), "Manifest.json is corrupt"),
    "no-spec": (lambda p: _spec_file(p).unlink(), "is missing"),
    "truncated-spec": (lambda p: _truncate(_spec_file(p), 0.5), "corrupt or truncated"),
    "garbage-spec": (lambda p: _spec_file(p).write_bytes(b"\xff" * 300), "corrupt or truncated"),
    "no-weights": (lambda p: _weight_file(p).unlink(), "weight file .* is missing"),
    "truncated-weights": (lambda p: _truncate(_weight_file(p), 0.6), "truncated"),
    "weights-header": (lambda p: _weight_file(p).write_bytes(b"\x01" * 64 + _weight_file(p).read_bytes()[64:]),
                       "storage version"),
    "weights-sentinel": (lambda p: _weight_file(p).write_bytes(_weight_file(p).read_bytes()[:64] + b"\x00" * 8
                                                               + _weight_file(p).read_bytes()[72:]), "sentinel"),
    "not-a-program": (lambda p: _edit_spec(p, lambda s: s.neuralNetwork.SetInParent()), "not an ML Program"),
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_a_corrupt_package_gives_one_clear_artifact_error(package_copy, corruption):
    damage, message = CORRUPTIONS[corruption]
    damage(package_copy)
    with pytest.raises(ArtifactError, match=message):
        load(package_copy, backend="coreml-reference")


def test_a_file_is_not_a_package(tmp_path):
    path = tmp_path / "model.mlpackage"
    path.write_bytes(b"zip?")
    with pytest.raises(ArtifactError, match="is a file"):
        CoreMLReferenceBackend().open(path, None)


# -- the weight file format ---------------------------------------------------------------------


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 6])
def test_sub_byte_unpacking_matches_an_lsb_first_bit_stream(bits):
    values = np.random.default_rng(bits).integers(0, 2**bits, 101).astype(np.uint8)
    stream = "".join(format(int(v), f"0{bits}b")[::-1] for v in values)  # LSB first, one value after another
    stream += "0" * (-len(stream) % 8)
    packed = np.array([int(stream[i:i + 8][::-1], 2) for i in range(0, len(stream), 8)], np.uint8)
    np.testing.assert_array_equal(unpack_bits(packed, bits, values.size), values)


def test_int4_unpacking_is_signed():
    values = np.array([-8, -1, 0, 7, 3, -5], np.int8)
    packed = np.array([(values[i] & 0xF) | ((values[i + 1] & 0xF) << 4) for i in range(0, 6, 2)], np.uint8)
    np.testing.assert_array_equal(unpack_bits(packed, 4, 6, signed=True), values)


def test_weight_file_reads_the_blob_a_const_points_at(linear_package):
    weights = WeightFile(_weight_file(linear_package))
    assert weights.count >= 1
    first = 64  # the first blob's metadata follows the 64-byte header
    got = [weights.read(offset, "FLOAT32", shape) for offset, shape in ((first, (8, 6)),)]
    assert METADATA.itemsize == 64
    np.testing.assert_array_equal(got[0], W)
    with pytest.raises(ArtifactError, match="FLOAT32 data but the program declares FLOAT16"):
        weights.read(first, "FLOAT16", (8, 6))
    with pytest.raises(ArtifactError, match="needs"):
        weights.read(first, "FLOAT32", (8, 7))


def test_float16_rounding_equals_numpy_cast_everywhere():
    from edgevit.runtime.backends.coreml_reference.program import round_to_float16

    rng = np.random.default_rng(0)
    values = (rng.standard_normal(200_000) * np.exp(rng.uniform(-25, 13, 200_000))).astype(np.float32)
    edges = np.array([np.nan, np.inf, -np.inf, 65504, 65519.99, 65520, -65520, 1e6, 2.0**-14, 2.0**-24,
                      2.0**-25, 3 * 2.0**-26, 2.0**-14 - 2.0**-26, -0.0, 0.0, 1 + 2.0**-11, 1 + 3 * 2.0**-11,
                      np.frombuffer(np.uint32(0x7F800001).tobytes(), np.float32)[0]], np.float32)
    values = np.concatenate([values, edges])
    with np.errstate(over="ignore"):
        expected = values.astype(np.float16).astype(np.float32)
    got = round_to_float16(values)
    same = (got == expected) | (np.isnan(got) & np.isnan(expected))
    assert same.all(), values[~same][:5]
    assert np.array_equal(np.signbit(got), np.signbit(expected))
