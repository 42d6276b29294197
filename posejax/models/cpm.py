"""Convolutional Pose Machines (Wei et al., CVPR 2016).

A Flax Linen port of MMPose's `CPM` backbone (mmpose/models/backbones/cpm.py),
the version behind its COCO and MPII results, with the same layout:

  stem         stage 1 from the image: three 9x9 conv+BN+ReLU, each followed
               by a 3x3 stride-2 max-pool (to 1/8), a 5x5 conv to 32 channels,
               a 9x9 conv to 512, a 1x1 conv 512 -> 512 and a 1x1 conv with
               bias to the belief maps (no BN, no ReLU)
  middle       the image features shared by stages 2..T: the first three
               conv+pool steps of the stem again, with their own weights
  stage t > 1  `middle_conv`: 5x5 conv+BN+ReLU of the shared features to
               `middle_channels`; concatenated after the previous stage's
               belief maps; `cpm_stages`: three 11x11 conv+BN+ReLU with
               `feat_channels`; `out_convs`: 1x1 conv+BN+ReLU, then a 1x1
               conv with bias to the belief maps

Every stage's belief maps are returned (intermediate supervision), all at 1/8
of the input resolution, so a CPM config needs `codec.stride = 8` (the train
loop renders one target at one stride for every stage). MMPose uses BN after
every convolution except the belief-map outputs, and so does this port; the
original Caffe CPM had no BN and 7x7 convs in the later stages, MMPose uses
11x11 (which this port follows).

Defaults (`CPM_PRESETS['cpm6']`, MMPose's COCO config) give 31,304,166
parameters for 17 keypoints (31.3M), whatever the input size.

Parameter names and MMPose's state-dict keys
--------------------------------------------
Submodules are named after the PyTorch attributes with list indices appended
by `_`, and every mmcv `ConvModule` is a `ConvModule` here with the same
children `conv` and `bn`:

  stem.0.conv.weight              stem_0/conv/kernel     (9x9, 3 -> 128)
  stem.9.conv.bias                stem_9/conv/bias       (1x1 to beliefs)
  middle.4.bn.running_mean        middle_4/bn/mean       (batch_stats)
  middle_conv.0.0.conv.weight     middle_conv_0_0/conv/kernel
  cpm_stages.0.model.2.bn.weight  cpm_stages_0/model_2/bn/scale
  out_convs.4.1.conv.weight       out_convs_4_1/conv/kernel

The max-pools (stem.1, .3, .5 and middle.1, .3, .5) have no parameters.
`torch_state_dict_key` implements the mapping; kernels go from HWIO to OIHW
with `kernel.transpose(3, 2, 0, 1)`.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from posejax.models import common

CPM_PRESETS = {
    'cpm6': dict(num_stages=6),
}

# Output stride: three stride-2 max-pools.
STRIDE = 8

# Channels of the stem's 5x5 conv, before the 9x9 conv to
# `stem_hidden_channels`; hard-coded in MMPose.
_STEM_BOTTLENECK = 32


class ConvModule(nn.Module):
  """mmcv's `ConvModule`: conv, then optionally BN and ReLU.

  The conv has a bias only when no BN follows (mmcv's `bias='auto'`).
  Children `conv` and `bn`, as the attributes of the PyTorch module.
  """

  features: int
  kernel_size: int
  norm: bool = True
  relu: bool = True
  dtype: common.Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = common.conv(self.features, self.kernel_size, use_bias=not self.norm,
                    dtype=self.dtype, name='conv')(x)
    if self.norm:
      x = common.batch_norm(train, dtype=self.dtype, name='bn')(x)
    if self.relu:
      x = common.relu(x)
    return x


def _max_pool(x: jax.Array) -> jax.Array:
  # PyTorch MaxPool2d(3, stride=2, padding=1): -inf padding, ceil(H / 2).
  return common.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


class CpmBlock(nn.Module):
  """The convolutions of one later stage: `model_0`, `model_1`, ...

  Attributes:
    features: output channels of each conv.
    kernel_sizes: one kernel size per conv.
    dtype: computation dtype.
  """

  features: tuple[int, ...] = (128, 128, 128)
  kernel_sizes: tuple[int, ...] = (11, 11, 11)
  dtype: common.Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    for i, (features, kernel_size) in enumerate(
        zip(self.features, self.kernel_sizes, strict=True)):
      x = ConvModule(features, kernel_size, dtype=self.dtype,
                     name=f'model_{i}')(x, train)
    return x


class CPM(nn.Module):
  """Convolutional Pose Machine; defaults are MMPose's 6-stage CPM.

  Attributes:
    num_keypoints: belief-map (heatmap) channels.
    num_stages: stages, each with its own (supervised) belief maps; >= 1.
    feat_channels: channels of the 11x11 convs of stages 2..T.
    middle_channels: channels the shared image features are reduced to (by
      each stage's 5x5 `middle_conv`) before the concatenation.
    stem_channels: channels of the 9x9 image convs of the stem and of the
      middle extractor (128, hard-coded in MMPose).
    stem_hidden_channels: channels of the stem's last 9x9 and 1x1 convs
      (512, hard-coded in MMPose).
    dtype: computation dtype (params stay float32; outputs are float32).
  """

  num_keypoints: int
  num_stages: int = 6
  feat_channels: int = 128
  middle_channels: int = 32
  stem_channels: int = 128
  stem_hidden_channels: int = 512
  dtype: common.Dtype = jnp.float32

  def __post_init__(self):
    # Fail at construction (before any tracing) on an impossible structure.
    common.require_positive(
        self, ('num_keypoints', 'num_stages', 'feat_channels',
               'middle_channels', 'stem_channels', 'stem_hidden_channels'))
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> list[jax.Array]:
    """Belief maps of every stage at 1/8 of the input resolution.

    Args:
      x: (N, H, W, 3) normalised images (see `common.model_inputs`); H
        and W divisible by 8.
      train: batch statistics and their update (True) or running averages.

    Returns:
      `num_stages` float32 heatmaps (N, H/8, W/8, num_keypoints), stage 1
      first.
    """
    if x.ndim != 4:
      raise ValueError(f'CPM expects NHWC input, got shape {x.shape}.')
    if x.shape[1] % STRIDE or x.shape[2] % STRIDE:
      raise ValueError(
          f'CPM input height and width must be divisible by {STRIDE} (the '
          f'heatmap stride), got {x.shape[1:3]}.')
    x = x.astype(self.dtype)

    def conv(features, kernel_size, name, **kwargs):
      return ConvModule(features, kernel_size, dtype=self.dtype, name=name,
                        **kwargs)

    def image_features(prefix):
      # stem.0-5 / middle.0-5: three conv + pool steps to 1/8.
      y = x
      for i in (0, 2, 4):
        y = conv(self.stem_channels, 9, f'{prefix}_{i}')(y, train)
        y = _max_pool(y)
      return y

    # Stage 1 from the image alone.
    y = image_features('stem')
    y = conv(_STEM_BOTTLENECK, 5, 'stem_6')(y, train)
    y = conv(self.stem_hidden_channels, 9, 'stem_7')(y, train)
    y = conv(self.stem_hidden_channels, 1, 'stem_8')(y, train)
    beliefs = conv(self.num_keypoints, 1, 'stem_9', norm=False,
                   relu=False)(y, train)
    outputs = [beliefs.astype(jnp.float32)]

    # Stages 2..T refine the previous beliefs with the shared features.
    if self.num_stages > 1:
      middle = image_features('middle')
    for t in range(self.num_stages - 1):
      features = conv(self.middle_channels, 5, f'middle_conv_{t}_0')(
          middle, train)
      # Beliefs first, as MMPose's torch.cat; the order matters for imported
      # weights.
      y = jnp.concatenate([beliefs, features], axis=-1)
      y = CpmBlock((self.feat_channels,) * 3, (11, 11, 11), dtype=self.dtype,
                   name=f'cpm_stages_{t}')(y, train)
      y = conv(self.feat_channels, 1, f'out_convs_{t}_0')(y, train)
      beliefs = conv(self.num_keypoints, 1, f'out_convs_{t}_1', norm=False,
                     relu=False)(y, train)
      outputs.append(beliefs.astype(jnp.float32))
    return outputs


def torch_state_dict_key(path: Sequence[str]) -> str:
  """MMPose state-dict key (backbone-relative) of a Flax variable path.

  Args:
    path: keys from the collection root to the leaf, e.g.
      `('cpm_stages_0', 'model_1', 'conv', 'kernel')` in `params` or
      `('stem_0', 'bn', 'mean')` in `batch_stats`.

  Returns:
    The key, e.g. `'cpm_stages.0.model.1.conv.weight'`; MMPose checkpoints
    prefix it with `backbone.`. Kernels must be transposed from HWIO to OIHW
    when converting values.
  """
  return common.torch_state_dict_key(path, sequential_children=False)
