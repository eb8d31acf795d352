"""What only the ExecuTorch target has: the delegation report, the rewrites that give XNNPACK the
whole graph, and clear errors for ``.pte`` files that cannot be run. (The registry-parametrized
export, read_ops and quantize tests cover its artifacts like any target's.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from export_helpers import family_models

from edgevit.errors import ArtifactError
from edgevit.export.targets import get_target
from edgevit.runtime import load


def _small_module():
    """LayerNorm, a q/k/v-style split, a 4-D matmul, a token select and a token mean: each an op form
    ExecuTorch's XNNPACK partitioner leaves outside the delegate as exported."""
    import torch

    class Small(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm = torch.nn.LayerNorm(8)
            self.qkv = torch.nn.Linear(8, 24)

        def forward(self, x):
            tokens = self.norm(x.flatten(2).transpose(1, 2))  # (1, 16, 8)
            q, k, v = self.qkv(tokens).reshape(1, 16, 6, 4).transpose(1, 2).split(2, dim=1)
            attn = (q @ k.transpose(-2, -1)).softmax(-1) @ v  # (1, 2, 16, 4)
            mixed = attn.transpose(1, 2).reshape(1, 16, 8)
            return mixed[:, 0] + mixed.mean(1)

    torch.manual_seed(0)  # the same weights and input in the fixture that lowers it and in the tests
    return Small().eval(), torch.randn(1, 8, 4, 4)


@pytest.fixture(scope="module")
def lowered(tmp_path_factory):
    """The small module lowered plainly and with edgevit's rewrites: ``{"plain"|"rewritten": path}``."""
    pytest.importorskip("executorch.exir")
    from edgevit._quiet import quiet
    from edgevit.quantize.executorch import export_program, to_pte

    model, example = _small_module()
    folder = tmp_path_factory.mktemp("pte")
    paths = {}
    for name, rewrite in (("plain", False), ("rewritten", True)):
        paths[name] = folder / f"{name}.pte"
        with quiet():
            paths[name].write_bytes(to_pte(export_program(model, example, rewrite=rewrite), rewrite=rewrite))
    return paths


@pytest.mark.slow
def test_the_report_counts_subgraphs_and_warns_about_ops_outside_the_delegate(lowered):
    target = get_target("executorch")
    plain = target.inspect(lowered["plain"], None)
    outside = plain.details["outside_delegate"]
    assert {"aten::native_layer_norm.out", "aten::split_with_sizes_copy.out", "aten::select_copy.int_out",
            "aten::mean.out"} <= set(outside), outside
    assert plain.details["delegated_subgraphs"] > 1
    assert len(plain.warnings) == 1 and "outside the XNNPACK delegate" in plain.warnings[0]
    assert f"into {plain.details['delegated_subgraphs']} delegated subgraphs" in plain.warnings[0]

    rewritten = target.inspect(lowered["rewritten"], None)
    assert rewritten.details["delegated_subgraphs"] == 1 and rewritten.details["outside_delegate"] == 0
    assert rewritten.warnings == ()
    assert rewritten.histogram["DELEGATE:XnnpackBackend"] == 1
    assert rewritten.histogram["xnnpack:FullyConnected"] == 3  # q/k/v and the LayerNorm's two means


@pytest.mark.slow
def test_the_reader_agrees_with_executorchs_runtime_and_the_rewrites_keep_the_numbers(lowered):
    import numpy as np
    import torch
    from tolerances import ARTIFACT, max_rel_err

    from edgevit.formats.pte import read_ops

    model, example = _small_module()
    with torch.no_grad():
        expected = model(example).numpy()
    for path in lowered.values():
        graph = read_ops(path)
        assert [graph.tensors[key].shape for key in graph.inputs + graph.outputs] == [(1, 8, 4, 4), (1, 8)]
        with load(path, threads=1) as session:  # "auto" finds the executorch backend by the suffix
            assert session.backend == "executorch" and session.input_specs[0].shape == (1, 8, 4, 4)
            got = session.run({"input_0": example.numpy()})["output_0"]
        assert max_rel_err(got, expected) <= ARTIFACT["fp32"].max_rel_err
        assert np.argmax(got) == np.argmax(expected)


@pytest.mark.slow
@pytest.mark.parametrize("model", family_models())
def test_every_family_lowers_to_one_xnnpack_subgraph(exported, model):
    """The rewrites cover every op form the zoo's families produce: nothing runs outside XNNPACK."""
    artifact = exported(model)[("executorch", "fp32")].artifact
    details = artifact.manifest.ops["details"]
    assert (details["delegated_subgraphs"], details["outside_delegate"]) == (1, 0), details
    assert artifact.manifest.ops["warnings"] == []
    assert "needs torch" in artifact.usage() and "the first installed of executorch" in artifact.usage()


def _channel_split_module():
    """A stem conv, then its channels split in two (CAS-ViT's token mixer does this in every block)."""
    import torch

    class ChannelSplit(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = torch.nn.Conv2d(3, 16, 3, 2, 1)
            self.a = torch.nn.Conv2d(8, 8, 1)
            self.b = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8)
            self.out = torch.nn.Conv2d(16, 4, 1)

        def forward(self, x):
            x = self.stem(x)
            p, q = torch.split(x, [8, 8], dim=1)
            return self.out(torch.cat([self.a(p), torch.sigmoid(self.b(q)) * p], 1)).mean((2, 3))

    torch.manual_seed(0)
    return ChannelSplit().eval(), torch.randn(1, 3, 32, 32)


@pytest.mark.slow
def test_int8_channel_splits_stay_inside_the_delegate(tmp_path):
    """At int8, XNNPACK's partitioner leaves a channel slice of an NCHW tensor outside the delegate
    (on CAS-ViT at zoo sizes ExecuTorch's runtime then failed at the first run); sliced in NHWC it
    takes it, and the lowered program computes what PT2E's reference graph does."""
    import copy

    import numpy as np
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from edgevit.formats.pte import read_ops
    from edgevit.quantize.executorch import _config, export_program, to_pte
    from edgevit.quantize.metrics import sqnr_db

    model, example = _channel_split_module()
    prepared = prepare_pt2e(copy.deepcopy(export_program(model, example).module()),
                            XNNPACKQuantizer().set_global(_config()))
    for seed in range(4):
        prepared(torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(seed)))
    program = export_program(convert_pt2e(prepared), example)
    with torch.no_grad():
        reference = program.module()(example).numpy()
    outside = {}
    for quantized in (False, True):
        path = tmp_path / f"quantized-{quantized}.pte"
        path.write_bytes(to_pte(program, quantized=quantized))
        outside[quantized] = [op.type for op in read_ops(path).ops if not op.type.startswith(("DELEGATE", "xnnpack"))]
        if quantized:
            assert len(read_ops(path).raw.delegates) == 1
            with load(path, threads=1) as session:
                got = session.run({"input_0": example.numpy()})["output_0"]
            assert sqnr_db(reference, got) > 30 and np.argmax(got) == np.argmax(reference)
    # the form that failed, still what the partitioner does with NCHW channel slices
    assert outside[False] and set(outside[False]) == {"aten::slice_copy.Tensor_out"}
    assert outside[True] == []


@pytest.mark.slow
def test_int8_tiny_vit_whose_windows_pad_lowers_to_a_program_that_loads(tmp_path):
    """TinyViT pads its attention windows at sizes they do not divide (test_tiny_vit at 32 px,
    tiny_vit_5m_224 at 64 px). XNNPACKQuantizer leaves the pad unannotated, its partitioner still
    took it as an int8 pad, and XNNPACK refused the program at load (StaticConstantPad: invalid
    parameter; the export failed with an ArtifactError). The pad now shares its input's
    quantization: the program loads, runs, and keeps every op in the delegate. (Random-init
    weights: the export is not verified here; trained tiny_vit_5m_224 at 64 px verified at cosine
    0.9994, top-1 agreement 100%.)"""
    import numpy as np

    from edgevit.export import export
    from edgevit.formats.pte import outside_delegates, read_ops

    artifact = export("test_tiny_vit", target="executorch", precision="int8", image_size=32, calib_size=16,
                      out=tmp_path, verify=False, quiet=True, progress=False)
    path = Path(artifact.path) / artifact.manifest.model_file
    assert not outside_delegates(read_ops(path))
    with load(path, threads=1) as session:
        got = session.run({session.input_specs[0].name: np.ones((1, 3, 32, 32), np.float32)})
    assert all(np.isfinite(v).all() for v in got.values())


def test_a_file_that_is_no_executorch_program_is_an_artifact_error(tmp_path):
    path = tmp_path / "model.pte"
    path.write_bytes(b"PK\x03\x04 this is a zip, not a program" * 4)
    with pytest.raises(ArtifactError, match=r"is not an ExecuTorch program \(no ET12 identifier"):
        load(path)


@pytest.mark.slow
def test_a_truncated_program_is_an_artifact_error_naming_the_file(lowered, tmp_path):
    path = tmp_path / "model.pte"
    path.write_bytes(lowered["rewritten"].read_bytes()[:200])
    with pytest.raises(ArtifactError, match="model.pte"):
        load(path)


@pytest.mark.slow
def test_threads_size_executorchs_pool(lowered):
    from executorch.extension.pybindings import portable_lib

    with load(lowered["rewritten"], backend="executorch", threads=1) as session:
        session.run({"input_0": _small_module()[1].numpy()})
        assert portable_lib._threadpool_get_thread_count() == 1
    with load(lowered["rewritten"], backend="executorch", threads=2) as session:
        session.run({"input_0": _small_module()[1].numpy()})
        assert portable_lib._threadpool_get_thread_count() == 2


def test_executorch_refuses_a_dynamic_batch_and_fp16_naming_why():
    from edgevit.errors import InvalidArgumentError, UnknownNameError
    from edgevit.export.options import ExportOptions

    target = get_target("executorch")
    with pytest.raises(InvalidArgumentError, match="rewrites for the XNNPACK delegate specialize"):
        target.check(ExportOptions(target="executorch", batch="dynamic"))
    with pytest.raises(UnknownNameError, match=r"valid are fp32, int8"):
        target.check(ExportOptions(target="executorch", precision="fp16"))


def test_executorch_error_codes_are_named():
    from edgevit.runtime.backends.executorch import _named

    assert _named("method->execute() failed with error 0x10") == (
        "method->execute() failed with error 0x10 (NotSupported: a kernel or the delegate does not support an op "
        "or dtype in this program)")
    assert _named("failed with error 0x23").endswith("(InvalidProgram)")
    assert _named("failed with error 0x7f") == "failed with error 0x7f" and _named("no code") == "no code"
