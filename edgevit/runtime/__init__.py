"""The torch-free runtime: load an exported artifact and run it with one backend.

Imports only numpy (and, on first use, the one backend asked for); a test checks that
``import edgevit.runtime`` never imports torch.

Example:
    >>> from edgevit import runtime
    >>> with runtime.load("cas_vit_xs-onnx-fp32", threads=2) as session:
    ...     top = session.predict(["cat.jpg"], top_k=5)
"""

from edgevit.runtime._backend import BACKENDS, Backend, BackendModel

# Built-in backends register lazily: listing them imports nothing heavy.
BACKENDS.register("onnxruntime", "edgevit.runtime.backends.onnxruntime:OnnxRuntimeBackend")
BACKENDS.register("openvino", "edgevit.runtime.backends.openvino:OpenVINOBackend")
BACKENDS.register("litert", "edgevit.runtime.backends.litert:LiteRTBackend")
BACKENDS.register("coreml", "edgevit.runtime.backends.coreml:CoreMLBackend")
BACKENDS.register("coreml-reference", "edgevit.runtime.backends.coreml_reference:CoreMLReferenceBackend")
BACKENDS.register("executorch", "edgevit.runtime.backends.executorch:ExecuTorchBackend")

__all__ = ["BACKENDS", "Backend", "BackendModel", "load", "Session", "backends_for", "options_for"]


def __getattr__(name: str):
    if name in ("load", "Session", "backends_for", "options_for"):
        from edgevit.runtime import session

        return getattr(session, name)
    raise AttributeError(f"module 'edgevit.runtime' has no attribute {name!r}")
