"""Building blocks shared by the model families."""

from edgevit.models.layers.attention_bias import attention_bias_index, downsample_attention_bias_index
from edgevit.models.layers.fuse import (
    fuse_bn_into_following_conv,
    fuse_bn_into_following_linear,
    fuse_conv_bn,
    fuse_linear_bn,
    merge_heads,
)
from edgevit.models.layers.misc import DropPath, trunc_normal_

__all__ = [
    "DropPath",
    "attention_bias_index",
    "downsample_attention_bias_index",
    "fuse_bn_into_following_conv",
    "fuse_bn_into_following_linear",
    "fuse_conv_bn",
    "fuse_linear_bn",
    "merge_heads",
    "trunc_normal_",
]
