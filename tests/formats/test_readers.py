"""Each format's ``read_ops`` on a small hand-built file (no torch, no conversion): op order,
tensor keys, shapes and dtypes, constants, conv groups, what the main graph holds, versions."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from edgevit.formats import Op, OpGraph, Tensor


def test_an_op_graph_counts_ops_and_finds_high_rank_tensors_and_readers():
    ops = (Op("Conv", "c", ("x", "w"), ("y",), ""), Op("Add", "a", ("y", "y"), ("z",), ""), Op("Relu", "f", ("z",), ("o",), "fn"))
    tensors = {"x": Tensor("x", (1, 3, 4, 4)), "w": Tensor("w", (8, 3, 1, 1, 1), constant=True),
               "y": Tensor("y", (1, 8, 2, 2, 4)), "z": Tensor("z", None)}
    graph = OpGraph("onnx", ops, tensors, main="")
    assert graph.main_ops == ops[:2] and graph.counts() == Counter({"Conv": 1, "Add": 1, "Relu": 1})
    assert graph.high_rank() == {"w": 5, "y": 5} and graph.high_rank(constants=False) == {"y": 5}
    assert graph.constants() == {"w"} and [op.name for op in graph.consumers()["y"]] == ["a", "a"]
    assert graph.names(["x", "missing"]) == ["x", ""]


# -- ONNX ------------------------------------------------------------------------------------------------


def _onnx_file(path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    double = helper.make_function("local", "Double", ["a"], ["b"], [helper.make_node("Add", ["a", "a"], ["b"])],
                                  [helper.make_opsetid("", 18)])
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "W"], ["c"], name="conv", group=2),
            helper.make_node("Reshape", ["c", "shape5"], ["r"], name="to5d"),
            helper.make_node("Reshape", ["r", "shape2"], ["f"], name="flat"),
            helper.make_node("MatMul", ["f", "M"], ["y"], name="matmul"),
            helper.make_node("Double", ["y"], ["z1"], domain="local", name="double1"),
            helper.make_node("Double", ["z1"], ["z2"], domain="local", name="double2"),
        ],
        "small",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
        [helper.make_tensor_value_info("z2", TensorProto.FLOAT, [1, 3])],
        initializer=[numpy_helper.from_array(np.ones((2, 1, 1, 1), np.float32), "W"),
                     numpy_helper.from_array(np.array([1, 2, 2, 2, 4]), "shape5"),
                     numpy_helper.from_array(np.array([1, 32]), "shape2"),
                     numpy_helper.from_array(np.ones((32, 3), np.float32), "M")],
    )
    model = helper.make_model(graph, functions=[double],
                              opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("local", 1)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


def test_onnx_reads_the_main_graph_then_each_function_once(tmp_path):
    from edgevit.formats.onnx import read_ops

    graph = read_ops(_onnx_file(tmp_path / "small.onnx"))
    assert [op.type for op in graph.main_ops] == ["Conv", "Reshape", "Reshape", "MatMul"]  # the calls are no ops
    assert [(op.type, op.graph) for op in graph.ops[4:]] == [("Add", "local:Double")]  # called twice, read once
    conv = graph.main_ops[0]
    assert (conv.name, conv.inputs, conv.outputs, conv.groups) == ("conv", ("x", "W"), ("c",), 2)
    assert graph.constants() == {"W", "shape5", "shape2", "M"}
    assert graph.high_rank(constants=False) == {"r": 5}
    assert graph.tensors["y"] == Tensor("y", (1, 3), "float32") and graph.tensors["M"].shape == (32, 3)
    assert [op.name for op in graph.consumers()["f"]] == ["matmul"]
    assert (graph.inputs, graph.outputs, graph.opset, graph.version) == (("x",), ("z2",), 18, 9)
    assert conv.raw.op_type == "Conv"  # the NodeProto, for attributes and metadata


# -- TFLite ----------------------------------------------------------------------------------------------


def _tflite_file(path):
    schema = pytest.importorskip("ai_edge_litert.schema_py_generated")
    import flatbuffers

    def code(builtin, custom=None):
        c = schema.OperatorCodeT()
        c.builtinCode, c.deprecatedBuiltinCode, c.version = builtin, min(builtin, 127), 1
        c.customCode = custom
        return c

    def tensor(name, shape, kind, buffer=0):
        t = schema.TensorT()
        t.name, t.shape, t.type, t.buffer = name, shape, kind, buffer
        return t

    def operator(opcode, inputs, outputs):
        o = schema.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = opcode, inputs, outputs
        return o

    types, ops = schema.TensorType, schema.BuiltinOperator
    weights = schema.BufferT()
    weights.data = list(np.arange(8, dtype=np.int8).view(np.uint8))
    first = schema.SubGraphT()
    first.tensors = [tensor("input", [1, 4], types.FLOAT32), tensor("", [2, 4], types.INT8, 1),
                     tensor("", [1, 2], types.INT8), tensor("out", [1, 1, 1, 1, 2], types.FLOAT32)]
    first.operators = [operator(0, [0, 1, -1], [2]), operator(1, [2], [3])]  # -1: no bias
    first.inputs, first.outputs = [0], [3]
    second = schema.SubGraphT()
    second.tensors = [tensor("a", [3], types.FLOAT32), tensor("b", [3], types.FLOAT32)]
    second.operators = [operator(2, [0, 0], [1])]
    second.inputs, second.outputs = [0], [1]
    model = schema.ModelT()
    model.version = 3
    model.operatorCodes = [code(ops.FULLY_CONNECTED), code(ops.CUSTOM, b"MyOp"), code(ops.ADD)]
    model.subgraphs, model.buffers = [first, second], [schema.BufferT(), weights]
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(bytes(builder.Output()))
    return path


def test_tflite_reads_every_subgraph_by_tensor_index_without_the_interpreter(tmp_path):
    from edgevit.formats.tflite import read_ops

    graph = read_ops(_tflite_file(tmp_path / "small.tflite"))
    assert [(op.type, op.inputs, op.outputs, op.graph) for op in graph.ops] == [
        ("FULLY_CONNECTED", (0, 1), (2,), 0), ("CUSTOM:MyOp", (2,), (3,), 0), ("ADD", ((1, 0), (1, 0)), ((1, 1),), 1)]
    assert graph.main_ops == graph.ops[:2] and (graph.inputs, graph.outputs, graph.version) == ((0,), (3,), 3)
    assert graph.tensors[1] == Tensor("", (2, 4), "int8", constant=True)  # names stripped: keyed by index
    assert graph.tensors[2] == Tensor("", (1, 2), "int8") and graph.tensors[(1, 0)].name == "a"
    assert graph.high_rank() == {"out": 5}


# -- ML Program ------------------------------------------------------------------------------------------


def test_mlprogram_reads_ops_with_named_parameters_and_resolves_conv_groups(tmp_path):
    ct = pytest.importorskip("coremltools")
    from coremltools.converters.mil import Builder as mb

    from edgevit.formats.mlprogram import read_ops

    @mb.program(input_specs=[mb.TensorSpec((1, 4, 8, 8))], opset_version=ct.target.iOS17)
    def program(x):
        y = mb.conv(x=x, weight=np.ones((4, 1, 3, 3), np.float32), groups=4, pad_type="same", name="dw")
        y = mb.reshape(x=y, shape=[1, 4, 2, 4, 8], name="to5d")
        y = mb.reshape(x=y, shape=[1, 256], name="flat")
        return mb.matmul(x=y, y=np.ones((256, 3), np.float32), name="head")

    model = ct.convert(program, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS17,
                       pass_pipeline=ct.PassPipeline.EMPTY, skip_model_load=True,
                       compute_precision=ct.precision.FLOAT32)
    path = tmp_path / "small.mlpackage"
    model.save(str(path))

    graph = read_ops(path)
    assert [op.type for op in graph.ops if op.type != "const"] == ["conv", "reshape", "reshape", "matmul"]
    conv = next(op for op in graph.ops if op.type == "conv")
    assert (conv.name, conv.groups, conv.params["x"]) == ("dw", 4, ("x",))
    assert graph.tensors[conv.params["weight"][0]].constant and graph.tensors[conv.params["weight"][0]].shape == (4, 1, 3, 3)
    assert graph.high_rank(constants=False) == {"to5d": 5}
    assert graph.tensors["head"] == Tensor("head", (1, 3), "float32")
    assert (graph.main, graph.inputs, graph.outputs) == ("main", ("x",), ("head",))
    assert (graph.opset, graph.version) == ("CoreML7", 8)
