"""Stacked Hourglass networks (Newell et al., ECCV 2016).

A Flax Linen port of princeton-vl/pytorch_stacked_hourglass
(`models/posenet.py`, `models/layers.py`), with the same structure:

  pre       `pre.0`: 7x7 stride-2 conv (with bias) + BN + ReLU to 64 channels;
            `pre.1`: Residual 64 -> 128; (`pre.2`) 2x2 max pool;
            `pre.3`: Residual 128 -> 128; `pre.4`: Residual 128 -> features.
            Output at 1/4 of the input resolution (the `stride` option
            drops the pool, or the pool and the conv's stride, for heatmaps
            at 1/2 or full resolution).
  stack i   `hgs.i.0`: an hourglass of the given depth;
            `features.i.0`: Residual; `features.i.1`: 1x1 conv + BN + ReLU;
            `outs.i`: 1x1 conv (with bias) to the heatmaps of stack i;
            then, except after the last stack, the input of the next stack is
            `x + merge_preds.i(heatmaps) + merge_features.i(features)` (1x1
            convs with bias): intermediate supervision re-injected.

An hourglass of depth n on f channels is
`up1(x) + upsample2(low3(low2(low1(maxpool2(x)))))` with Residuals `up1`,
`low1`, `low3`, and `low2` an hourglass of depth n - 1 (a Residual at depth
1). Upsampling is nearest-neighbour.

The Residual module is pre-activation: BN, ReLU, 1x1 conv to f/2, BN, ReLU,
3x3 conv, BN, ReLU, 1x1 conv to f, plus the input; every conv has a bias and
no BN of its own. When the input and output widths differ a 1x1 conv with
bias (`skip_layer`) projects the shortcut. The original creates `skip_layer`
in every Residual but only uses it when the widths differ; the unused ones
are not created here (`unused_torch_state_dict_keys` lists them).

The original does not re-initialise anything, so every conv has PyTorch's
default init: kernel and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))
(`kaiming_uniform_(a=sqrt(5))`); BatchNorm 1/0, momentum 0.1, eps 1e-5.
Its input is the RGB image scaled to [0, 1] (`img / 255`), not ImageNet-
normalised: the class says so (`input_normalization = 'unit'`), and the
train step and `predict` normalise accordingly, so converted checkpoints see
the input they were trained on.

Parameter names and the official PyTorch state-dict keys
--------------------------------------------------------
Submodules are named after the PyTorch attributes with list indices appended
by `_`; here the children `conv` and `bn` of the original's `Conv` class keep
their names:

  pre.0.conv, pre.0.bn              pre_0/conv, pre_0/bn
  pre.1.conv1.conv                  pre_1/conv1/conv
  pre.1.skip_layer.conv             pre_1/skip_layer/conv
  hgs.0.0.low2.low2.up1.bn1         hgs_0_0/low2/low2/up1/bn1
  features.0.1.bn                   features_0_1/bn
  outs.0.conv                       outs_0/conv
  merge_preds.0.conv.conv           merge_preds_0/conv/conv

Leaves: `kernel` -> `weight` (HWIO -> OIHW: `kernel.transpose(3, 2, 0, 1)`),
BN `scale` -> `weight`, `bias` -> `bias`, batch_stats `mean` ->
`running_mean`, `var` -> `running_var`. `torch_state_dict_key` implements
exactly this mapping. PyTorch's `num_batches_tracked` buffers have no
counterpart.
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from posejax.models import common

HOURGLASS_PRESETS = {
    'hg2': dict(num_stacks=2),
    'hg8': dict(num_stacks=8),
}

# Hard-coded widths of the original's `pre` network.
PRE_WIDTHS = (64, 128)

# PyTorch's default Conv2d kernel init, kaiming_uniform_(a=sqrt(5)):
# U(-b, b) with b = sqrt(6 / ((1 + 5) * fan_in)) = 1 / sqrt(fan_in).
torch_default_kernel_init = nn.initializers.variance_scaling(
    1.0 / 3.0, 'fan_in', 'uniform')


def torch_default_bias_init(fan_in: int) -> nn.initializers.Initializer:
  """PyTorch's default Conv2d bias init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


class ConvLayer(nn.Module):
  """The original's `Conv`: conv with bias, then optional BN, optional ReLU.

  Padding is `(kernel_size - 1) // 2` on every side, as in the original.
  Children `conv` and (with `bn=True`) `bn`, named as in PyTorch.
  """

  features: int
  kernel_size: int = 3
  strides: int = 1
  bn: bool = False
  relu: bool = True
  dtype: common.Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    k = self.kernel_size
    pad = (k - 1) // 2
    x = nn.Conv(
        features=self.features,
        kernel_size=(k, k),
        strides=(self.strides, self.strides),
        padding=((pad, pad), (pad, pad)),
        use_bias=True,
        dtype=self.dtype,
        param_dtype=jnp.float32,
        kernel_init=torch_default_kernel_init,
        bias_init=torch_default_bias_init(x.shape[-1] * k * k),
        name='conv')(x)
    if self.bn:
      x = common.batch_norm(train, dtype=self.dtype, name='bn')(x)
    if self.relu:
      x = common.relu(x)
    return x


class Residual(nn.Module):
  """The original's pre-activation `Residual` module.

  Children `bn1`, `conv1`, `bn2`, `conv2`, `bn3`, `conv3` and, only when the
  input width differs from `features`, `skip_layer` (each `conv*` and
  `skip_layer` a `ConvLayer` without BN or ReLU).
  """

  features: int
  dtype: common.Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if self.features % 2:
      raise ValueError(
          f'{self.name}: Residual features must be even (the bottleneck has '
          f'features / 2 channels), got {self.features}.')
    half = self.features // 2
    residual = x
    if x.shape[-1] != self.features:
      residual = ConvLayer(self.features, 1, relu=False, dtype=self.dtype,
                           name='skip_layer')(x)
    y = common.batch_norm(train, dtype=self.dtype, name='bn1')(x)
    y = common.relu(y)
    y = ConvLayer(half, 1, relu=False, dtype=self.dtype, name='conv1')(y)
    y = common.batch_norm(train, dtype=self.dtype, name='bn2')(y)
    y = common.relu(y)
    y = ConvLayer(half, 3, relu=False, dtype=self.dtype, name='conv2')(y)
    y = common.batch_norm(train, dtype=self.dtype, name='bn3')(y)
    y = common.relu(y)
    y = ConvLayer(self.features, 1, relu=False, dtype=self.dtype,
                  name='conv3')(y)
    return y + residual


class Hourglass(nn.Module):
  """One hourglass of `depth` levels on `features` channels.

  Children `up1`, `low1`, `low2` (an `Hourglass` of depth - 1, or a
  `Residual` at depth 1) and `low3`. The input height and width must be
  divisible by `2**depth`.
  """

  depth: int = 4
  features: int = 256
  dtype: common.Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    up1 = Residual(self.features, dtype=self.dtype, name='up1')(x, train)
    low = common.max_pool(x, (2, 2), strides=(2, 2))
    low = Residual(self.features, dtype=self.dtype, name='low1')(low, train)
    if self.depth > 1:
      low = Hourglass(self.depth - 1, self.features, dtype=self.dtype,
                      name='low2')(low, train)
    else:
      low = Residual(self.features, dtype=self.dtype, name='low2')(low, train)
    low = Residual(self.features, dtype=self.dtype, name='low3')(low, train)
    return up1 + common.upsample_nearest(low, 2)


class Merge(nn.Module):
  """The original's `Merge`: a 1x1 conv with bias (child `conv`)."""

  features: int
  dtype: common.Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return ConvLayer(self.features, 1, relu=False, dtype=self.dtype,
                     name='conv')(x)


class StackedHourglass(nn.Module):
  """Stacked Hourglass network; defaults are the original's 8-stack model.

  Attributes:
    num_keypoints: output heatmap channels (16 for MPII).
    num_stacks: hourglasses, each supervised (`nstack`).
    features: channels inside the hourglasses (`inp_dim`); even.
    depth: levels of each hourglass (4 in the original, hard-coded); the
      input height and width must be divisible by `stride * 2**depth`.
    stride: input pixels per heatmap pixel. 4 is the original: the 7x7 conv
      of `pre_0` has stride 2 and a 2x2 max-pool follows `pre_1`. 2 drops the
      max-pool; 1 also makes the conv stride 1, so that small inputs (96x96
      faces) get heatmaps at their full resolution. The parameters are the
      same for every stride.
    dtype: computation dtype (params stay float32; outputs are float32).
  """

  num_keypoints: int
  num_stacks: int = 8
  features: int = 256
  depth: int = 4
  stride: int = 4
  dtype: common.Dtype = jnp.float32

  # The original feeds `img / 255` (see `common.model_inputs`).
  input_normalization = 'unit'

  def __post_init__(self):
    # Fail at construction (before any tracing) on inconsistent structure.
    common.require_positive(
        self, ('num_keypoints', 'num_stacks', 'features', 'depth'))
    if self.features % 2:
      raise ValueError(
          f'StackedHourglass.features must be even (Residual bottlenecks '
          f'have features / 2 channels), got {self.features}.')
    if self.stride not in (1, 2, 4):
      raise ValueError(
          f'StackedHourglass.stride must be 1, 2 or 4, got {self.stride}.')
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> list[jax.Array]:
    """Heatmaps of every stack at 1/stride of the input resolution.

    Args:
      x: (N, H, W, 3) images scaled to [0, 1] (see `common.model_inputs`).
      train: batch statistics and their update (True) or running averages.

    Returns:
      A list of `num_stacks` float32 heatmaps (N, H/stride, W/stride,
      num_keypoints), first stack first; the last is the network's
      prediction.
    """
    if x.ndim != 4:
      raise ValueError(
          f'StackedHourglass expects NHWC input, got shape {x.shape}.')
    multiple = self.stride * 2**self.depth
    if x.shape[1] % multiple or x.shape[2] % multiple:
      raise ValueError(
          f'StackedHourglass: input height and width must be divisible by '
          f'{multiple} (stride {self.stride} before hourglasses of depth '
          f'{self.depth}), got {x.shape[1:3]}.')
    x = x.astype(self.dtype)

    x = ConvLayer(PRE_WIDTHS[0], 7, strides=min(self.stride, 2), bn=True,
                  relu=True, dtype=self.dtype, name='pre_0')(x, train)
    x = Residual(PRE_WIDTHS[1], dtype=self.dtype, name='pre_1')(x, train)
    if self.stride == 4:
      x = common.max_pool(x, (2, 2), strides=(2, 2))
    x = Residual(PRE_WIDTHS[1], dtype=self.dtype, name='pre_3')(x, train)
    x = Residual(self.features, dtype=self.dtype, name='pre_4')(x, train)

    outputs = []
    for i in range(self.num_stacks):
      y = Hourglass(self.depth, self.features, dtype=self.dtype,
                    name=f'hgs_{i}_0')(x, train)
      y = Residual(self.features, dtype=self.dtype,
                   name=f'features_{i}_0')(y, train)
      feature = ConvLayer(self.features, 1, bn=True, relu=True,
                          dtype=self.dtype, name=f'features_{i}_1')(y, train)
      preds = ConvLayer(self.num_keypoints, 1, relu=False, dtype=self.dtype,
                        name=f'outs_{i}')(feature)
      outputs.append(preds.astype(jnp.float32))
      if i < self.num_stacks - 1:
        # Re-inject this stack's prediction and features into the next one.
        x = (x + Merge(self.features, dtype=self.dtype,
                       name=f'merge_preds_{i}')(preds)
             + Merge(self.features, dtype=self.dtype,
                     name=f'merge_features_{i}')(feature))
    return outputs


def torch_state_dict_key(path: Sequence[str]) -> str:
  """Official PyTorch state-dict key of a Flax variable path.

  Args:
    path: keys from the collection root to the leaf, e.g.
      `('hgs_0_0', 'low2', 'up1', 'conv1', 'conv', 'kernel')` in `params` or
      `('features_1_1', 'bn', 'mean')` in `batch_stats`.

  Returns:
    The key, e.g. `'hgs.0.0.low2.up1.conv1.conv.weight'`. Kernels must be
    transposed from HWIO to OIHW (`transpose(3, 2, 0, 1)`) when converting
    values.
  """
  return common.torch_state_dict_key(path, sequential_children=False)


def _residual_widths(model: StackedHourglass) -> list[tuple[str, int, int]]:
  """(PyTorch prefix, input width, output width) of every Residual."""
  f = model.features
  widths = [('pre.1', PRE_WIDTHS[0], PRE_WIDTHS[1]),
            ('pre.3', PRE_WIDTHS[1], PRE_WIDTHS[1]),
            ('pre.4', PRE_WIDTHS[1], f)]
  for i in range(model.num_stacks):
    prefix = f'hgs.{i}.0'
    for _ in range(model.depth - 1):
      widths += [(f'{prefix}.{name}', f, f) for name in ('up1', 'low1', 'low3')]
      prefix += '.low2'
    widths += [(f'{prefix}.{name}', f, f)
               for name in ('up1', 'low1', 'low2', 'low3')]
    widths.append((f'features.{i}.0', f, f))
  return widths


def unused_torch_state_dict_keys(model: StackedHourglass) -> frozenset[str]:
  """Official state-dict keys of parameters the original never uses.

  Every Residual of the original creates `skip_layer`, but only uses it when
  its input and output widths differ; a converter should ignore these keys
  (this port has no such parameters).

  Args:
    model: the network whose PyTorch counterpart the state dict comes from.

  Returns:
    The `*.skip_layer.conv.{weight,bias}` keys of equal-width Residuals.
  """
  return frozenset(
      f'{prefix}.skip_layer.conv.{leaf}'
      for prefix, width_in, width_out in _residual_widths(model)
      if width_in == width_out
      for leaf in ('weight', 'bias'))
