"""The MIL ops the reference executor implements, one module per kind of op.

Importing this package fills :data:`OPS`; :func:`supported_ops` lists them with the iOS
versions of their definitions.
"""

from edgevit.runtime.backends.coreml_reference.ops import (  # noqa: F401 - registers the ops
    activation,
    compression,
    conv,
    elementwise,
    image,
    linear,
    rearrange,
    reduction,
    sampling,
    scatter,
    selection,
    tensor,
)
from edgevit.runtime.backends.coreml_reference.ops._registry import (
    OPS,
    OPSETS,
    OpArgs,
    OpImpl,
    find_op,
    op,
    supported_ops,
)

__all__ = ["OPS", "OPSETS", "OpArgs", "OpImpl", "find_op", "op", "supported_ops"]
