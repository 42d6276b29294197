"""The stacked hourglass of associative embedding (Newell et al., NeurIPS 2017).

A Flax Linen port of `models/posenet.py` of princeton-vl/pose-ae-train, the
network of the original bottom-up associative-embedding paper: unlike the
single-person stacked hourglass (posejax/models/hourglass.py) it has no
residual modules and no BatchNorm, only 3x3 convolutions with bias and
ReLU, and each hourglass level widens the features by `increase` channels:

  pre        7x7/2 conv (64), 3x3 conv (128), 2x2 max-pool, 3x3 conv (128),
             3x3 conv (`features`): 1/4 resolution (`pre.0`, `.1`, `.3`, `.4`)
  stack i    `features.i.0`, an hourglass of `depth` levels: at each level
             `up1` (3x3 conv, same width) beside a 2x2 max-pool, `low1`
             (3x3 conv, + increase), the next level (`low2`; the innermost
             is one 3x3 conv), `low3` (3x3 conv back), nearest 2x
             upsampling, the sum; then `features.i.1`, `.2` (3x3 convs)
  head i     `outs.i`, a 1x1 conv with bias and no ReLU: `num_keypoints`
             channels (posejax: K heatmaps then K tags,
             posejax/codecs/embedding.py; the original's 68 channels for
             COCO hold 17 heatmaps, 17 tags and 34 it never reads)
  merge      between stacks, x + `merge_preds.i`(head) + `merge_features.i`
             (features), 1x1 convs with bias, no ReLU

Every stack's output is returned and supervised. The input is the image in
[0, 1] (`input_normalization = 'unit'`).

Parameter names and the official state-dict keys: modules are named after
the PyTorch attributes with list indices after `_` (`features_0_0/low2/up1/
conv` is `features.0.0.low2.up1.conv`); kernels HWIO <-> OIHW as everywhere
(`torch_state_dict_key`).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from posejax.models import common
from posejax.models import hourglass

POSE_AE_HOURGLASS_PRESETS = {
    # The COCO network of the paper: 4 stacks at 512x512.
    'ae4': dict(num_stacks=4, features=256, increase=128, depth=4),
}


# pose-ae-train's `Conv` without BatchNorm (conv with bias, then ReLU), with
# PyTorch's default initialisation: the same layer as the single-person
# hourglass's.
Conv = hourglass.ConvLayer


class Hourglass(nn.Module):
  """One hourglass level and, through `low2`, the levels below it."""

  depth: int
  features: int
  increase: int
  dtype: common.Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    wider = self.features + self.increase
    up1 = Conv(self.features, dtype=self.dtype, name='up1')(x)
    low = common.max_pool(x, (2, 2), strides=(2, 2))
    low = Conv(wider, dtype=self.dtype, name='low1')(low)
    if self.depth > 1:
      low = Hourglass(self.depth - 1, wider, self.increase, dtype=self.dtype,
                      name='low2')(low)
    else:
      low = Conv(wider, dtype=self.dtype, name='low2')(low)
    low = Conv(self.features, dtype=self.dtype, name='low3')(low)
    return up1 + common.upsample_nearest(low, 2)


class PoseAEHourglass(nn.Module):
  """The associative-embedding stacked hourglass; defaults are the paper's.

  Attributes:
    num_keypoints: output channels of every stack (2 K for K keypoints).
    num_stacks: hourglasses in sequence, each supervised.
    features: the width at 1/4 resolution.
    increase: channels added per hourglass level.
    depth: levels per hourglass (the input must divide by 4 * 2**depth).
    dtype: computation dtype.
  """

  num_keypoints: int
  num_stacks: int = 4
  features: int = 256
  increase: int = 128
  depth: int = 4
  dtype: common.Dtype = jnp.float32

  # The original feeds images in [0, 1] (`common.model_inputs`).
  input_normalization = 'unit'

  def __post_init__(self):
    common.require_positive(self, ('num_keypoints', 'num_stacks', 'features',
                                   'depth'))
    if self.increase < 0:
      raise ValueError(f'PoseAEHourglass.increase must be >= 0, got {self.increase}.')
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> list[jax.Array]:
    """Every stack's (N, H/4, W/4, num_keypoints) output, float32."""
    del train  # no BatchNorm
    if x.ndim != 4:
      raise ValueError(f'PoseAEHourglass expects NHWC input, got {x.shape}.')
    factor = 4 * 2**self.depth
    if x.shape[1] % factor or x.shape[2] % factor:
      raise ValueError(
          f'PoseAEHourglass of depth {self.depth} needs input sides divisible by '
          f'{factor}; got {x.shape[1]}x{x.shape[2]}.')
    x = x.astype(self.dtype)
    d = self.dtype
    x = Conv(64, 7, strides=2, dtype=d, name='pre_0')(x)
    x = Conv(128, dtype=d, name='pre_1')(x)
    x = common.max_pool(x, (2, 2), strides=(2, 2))
    x = Conv(128, dtype=d, name='pre_3')(x)
    x = Conv(self.features, dtype=d, name='pre_4')(x)
    outputs = []
    for i in range(self.num_stacks):
      feature = Hourglass(self.depth, self.features, self.increase, dtype=d,
                          name=f'features_{i}_0')(x)
      feature = Conv(self.features, dtype=d, name=f'features_{i}_1')(feature)
      feature = Conv(self.features, dtype=d, name=f'features_{i}_2')(feature)
      preds = Conv(self.num_keypoints, 1, relu=False, dtype=d, name=f'outs_{i}')(feature)
      outputs.append(preds.astype(jnp.float32))
      if i < self.num_stacks - 1:
        merged_preds = _Merge(self.features, dtype=d, name=f'merge_preds_{i}')(preds)
        merged = _Merge(self.features, dtype=d, name=f'merge_features_{i}')(feature)
        x = x + merged_preds + merged
    return outputs


class _Merge(nn.Module):
  """pose-ae-train's `Merge`: a 1x1 conv with bias, no ReLU (`conv.conv`)."""

  features: int
  dtype: common.Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    return Conv(self.features, 1, relu=False, dtype=self.dtype, name='conv')(x)


def torch_state_dict_key(path: Sequence[str]) -> str:
  """The pose-ae-train state-dict key of a Flax variable path."""
  return common.torch_state_dict_key(path, sequential_children=False)
