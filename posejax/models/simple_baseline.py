"""SimpleBaselines for top-down pose estimation (Xiao et al., ECCV 2018).

A Flax Linen port of `lib/models/pose_resnet.py` of the official
microsoft/human-pose-estimation.pytorch, with the same structure:

  stem      `conv1` (7x7 stride 2) + `bn1` + ReLU, then 3x3 stride-2 max pool
  backbone  `layer1`..`layer4`: torchvision ResNet Bottlenecks (3/4/6/3 blocks
            for ResNet-50, 3/4/23/3 for 101, 3/8/36/3 for 152); the stride
            sits on the 3x3 conv, as in the official `Bottleneck` and
            `common.Bottleneck` (its
            `Bottleneck_CAFFE` variant, stride on the first 1x1, is not ported)
  head      `deconv_layers`: three ConvTranspose(256, kernel 4, stride 2,
            padding 1, no bias) + BN + ReLU, 1/32 -> 1/4 resolution; then
            `final_layer`, a 1x1 conv with bias to the heatmaps

Initialisation follows the original: deconvolution and final conv kernels
~ N(0, 0.001^2), final bias 0, BatchNorm 1/0. The original always loads an
ImageNet torchvision ResNet into the backbone (it refuses to train without
one), so the backbone starts as torchvision initialises a ResNet: kaiming
normal, fan_out, ReLU gain.

Parameter names and the official PyTorch state-dict keys
--------------------------------------------------------
As in `hrnet.py`, submodules are named after the PyTorch attributes with
list indices appended by `_`, and a `ConvBN` child `conv`/`bn` is entry
`0`/`1` of its `nn.Sequential`:

  conv1, bn1                          conv1, bn1
  layer2.0.conv2                      layer2_0/conv2
  layer2.0.downsample.{0,1}           layer2_0/downsample/{conv,bn}
  deconv_layers.{0,3,6} (deconv)      deconv_layers_{0,3,6}
  deconv_layers.{1,4,7} (BN)          deconv_layers_{1,4,7}
  final_layer                         final_layer

`deconv_layers` is one flat `nn.Sequential` of (deconv, BN, ReLU) triples,
hence the indices 3i and 3i + 1. Leaves: `kernel` -> `weight`, BN `scale` ->
`weight`, `bias` -> `bias`, batch_stats `mean` -> `running_mean`, `var` ->
`running_var`. `torch_state_dict_key` implements this mapping and
`torch_weight_axes` gives the kernel transposition:

  Conv2d           Flax HWIO (kh, kw, in, out) -> torch OIHW (out, in, kh, kw)
                   `kernel.transpose(3, 2, 0, 1)`
  ConvTranspose2d  Flax (kh, kw, in, out) -> torch (in, out, kh, kw)
                   `kernel.transpose(2, 3, 0, 1)` (the same permutation
                   converts back); the kernel is stored unflipped, exactly
                   PyTorch's weight, and flipped inside `ConvTranspose`.

PyTorch's `num_batches_tracked` buffers have no counterpart.
"""

from __future__ import annotations

import functools

import re
from typing import Sequence

import flax.linen as nn
from flax.linen import dtypes
import jax
import jax.numpy as jnp

from posejax.models import common

SIMPLE_BASELINE_PRESETS = {
    'r50': dict(depth=50),
    'r101': dict(depth=101),
    'r152': dict(depth=152),
}

# Bottleneck blocks per stage (`resnet_spec` of the original).
RESNET_STAGE_BLOCKS = {
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}

# Deconvolution kernel -> (padding, output_padding), `_get_deconv_cfg` of the
# original: each choice exactly doubles the spatial size with stride 2.
DECONV_PADDING = {
    4: (1, 0),
    3: (1, 1),
    2: (0, 0),
}

# torchvision ResNet init: kaiming_normal_(mode='fan_out', nonlinearity='relu'),
# an untruncated normal with variance 2 / (out_channels * kh * kw).
resnet_kernel_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


class ConvTranspose(nn.Module):
  """PyTorch's `ConvTranspose2d(bias=False)`, numerically identical.

  Output size `(H - 1) * strides - 2 * padding + kernel_size +
  output_padding`. Written out as a convolution of the input dilated by
  `strides` (zeros between pixels), padded by `kernel_size - 1 - padding`
  (plus `output_padding` at the bottom/right), with the spatially flipped
  kernel: that is the definition PyTorch implements, whereas
  `nn.ConvTranspose`'s string paddings place the output grid differently.

  Attributes:
    features: output channels.
    kernel_size: square kernel size.
    strides: upsampling factor.
    padding: PyTorch's `padding` (cropped from each side of the full output);
      at most `kernel_size - 1`.
    output_padding: PyTorch's `output_padding` (added at the bottom/right).
    dtype: computation dtype.

  The parameter `kernel` has shape (kh, kw, in, out) and equals PyTorch's
  weight (in, out, kh, kw) transposed by (2, 3, 0, 1), without flipping.
  """

  features: int
  kernel_size: int = 4
  strides: int = 2
  padding: int = 1
  output_padding: int = 0
  dtype: common.Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k = self.kernel_size
    if not 0 <= self.padding <= k - 1:
      raise ValueError(
          f'{self.name}: padding must be in [0, kernel_size - 1 = {k - 1}], '
          f'got {self.padding}.')
    kernel = self.param('kernel', common.conv_kernel_init,
                        (k, k, x.shape[-1], self.features), jnp.float32)
    x, kernel = dtypes.promote_dtype(x, kernel, dtype=self.dtype)
    return _transposed_conv(x, kernel, self.strides, k - 1 - self.padding,
                            self.output_padding)


def _upsampling_conv(x, kernel, strides, low, output_padding):
  """PyTorch's transposed convolution as an input-dilated convolution."""
  high = low + output_padding
  return jax.lax.conv_general_dilated(
      x,
      kernel[::-1, ::-1],
      window_strides=(1, 1),
      padding=((low, high), (low, high)),
      lhs_dilation=(strides, strides),
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _transposed_conv(x, kernel, strides, low, output_padding):
  return _upsampling_conv(x, kernel, strides, low, output_padding)


def _transposed_conv_fwd(x, kernel, strides, low, output_padding):
  return _transposed_conv(x, kernel, strides, low, output_padding), (x, kernel)


def _transposed_conv_bwd(strides, low, output_padding, residuals, dy):
  # Autodiff would take the kernel gradient as a convolution that is both
  # input- and window-dilated, which XLA:CPU runs on a slow generic path
  # (many times the forward's time; docs/performance.md, "Train step speed"). The layer
  # is linear in x, so with
  # down(.; kernel) its transpose (a plain strided convolution),
  # <dy, up(x; kernel)> = <down(dy; kernel), x>: the kernel gradient is the
  # weight gradient of that strided convolution, a fast path, and the input
  # gradient is down(dy) itself.
  x, kernel = residuals

  def down(kernel):
    up = lambda z: _upsampling_conv(z, kernel, strides, low, output_padding)
    return jax.linear_transpose(up, x)(dy)[0]

  dx, down_vjp = jax.vjp(down, kernel)
  return dx, down_vjp(x)[0]


_transposed_conv.defvjp(_transposed_conv_fwd, _transposed_conv_bwd)


def resnet_features(x: jax.Array, train: bool, *, depth: int, width: int = 64,
                    dtype: common.Dtype = jnp.float32) -> list[jax.Array]:
  """torchvision's ResNet trunk, built in the calling module's scope.

  `conv1`, `bn1`, the 3x3 stride-2 max pool, then `layer1`..`layer4`
  (Bottlenecks named `layer{s}_{b}`, as the torchvision keys); every network
  with a ResNet backbone (SimpleBaselines, CPN) calls this inside its own
  `nn.compact` method, so that the layers are its children.

  Returns:
    [C2, C3, C4, C5]: each stage's output, at 1/4 .. 1/32 of the input, with
    4, 8, 16, 32 times `width` channels.
  """
  # Stem: 7x7 stride-2 conv, then 3x3 stride-2 max pool (padding 1, i.e.
  # -inf borders as in PyTorch) to 1/4 resolution.
  x = common.conv(width, 7, strides=2, dtype=dtype,
                  kernel_init=resnet_kernel_init, name='conv1')(x)
  x = common.batch_norm(train, dtype=dtype, name='bn1')(x)
  x = common.relu(x)
  x = common.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))

  # The first block of stages 2-4 halves the resolution.
  features = []
  for stage, num_blocks in enumerate(RESNET_STAGE_BLOCKS[depth]):
    planes = width * 2**stage
    for b in range(num_blocks):
      strides = 2 if stage > 0 and b == 0 else 1
      downsample = common.needs_downsample(
          x.shape[-1], planes, strides, common.Bottleneck.expansion)
      x = common.Bottleneck(planes, strides=strides, downsample=downsample,
                            dtype=dtype, kernel_init=resnet_kernel_init,
                            name=f'layer{stage + 1}_{b}')(x, train)
    features.append(x)
  return features


class SimpleBaseline(nn.Module):
  """ResNet + deconvolution head; defaults are SimpleBaseline-R50.

  Attributes:
    num_keypoints: output heatmap channels.
    depth: ResNet depth, a key of `RESNET_STAGE_BLOCKS` (50, 101 or 152).
    width: channels of the stem and Bottleneck `planes` of `layer1`; stage s
      has `width * 2**(s - 1)` planes and outputs 4 times that. 64 in the
      original (hard-coded); smaller values only make narrow test networks.
    deconv_features: output channels of each deconvolution
      (`NUM_DECONV_FILTERS`).
    deconv_kernels: kernel of each deconvolution (`NUM_DECONV_KERNELS`), a key
      of `DECONV_PADDING`; every deconvolution doubles the resolution.
    final_kernel: kernel of `final_layer` (`FINAL_CONV_KERNEL`), 1 or 3.
    dtype: computation dtype (params stay float32; output is float32).
  """

  num_keypoints: int
  depth: int = 50
  width: int = 64
  deconv_features: tuple[int, ...] = (256, 256, 256)
  deconv_kernels: tuple[int, ...] = (4, 4, 4)
  final_kernel: int = 1
  dtype: common.Dtype = jnp.float32

  def __post_init__(self):
    # Fail at construction (before any tracing) on inconsistent structure.
    if self.depth not in RESNET_STAGE_BLOCKS:
      raise ValueError(
          f'SimpleBaseline.depth must be one of {sorted(RESNET_STAGE_BLOCKS)}, '
          f'got {self.depth}.')
    if len(self.deconv_features) != len(self.deconv_kernels):
      raise ValueError(
          f'SimpleBaseline.deconv_features and deconv_kernels need one entry '
          f'per deconvolution, got {self.deconv_features} and '
          f'{self.deconv_kernels}.')
    for kernel in self.deconv_kernels:
      if kernel not in DECONV_PADDING:
        raise ValueError(
            f'SimpleBaseline.deconv_kernels entries must be one of '
            f'{sorted(DECONV_PADDING)}, got {self.deconv_kernels}.')
    if self.final_kernel not in (1, 3):
      raise ValueError(
          f'SimpleBaseline.final_kernel must be 1 or 3, got '
          f'{self.final_kernel}.')
    common.require_positive(self, ('num_keypoints', 'width'))
    if self.deconv_features and min(self.deconv_features) < 1:
      raise ValueError(
          f'SimpleBaseline.deconv_features must be positive, got '
          f'{self.deconv_features}.')
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> list[jax.Array]:
    """Heatmaps at `2**len(deconv_kernels) / 32` of the input resolution.

    Args:
      x: (N, H, W, 3) normalised images (see `common.model_inputs`); H
        and W divisible by 32.
      train: batch statistics and their update (True) or running averages.

    Returns:
      A one-element list with float32 heatmaps (N, H/4, W/4, num_keypoints)
      for the default three deconvolutions.
    """
    if x.ndim != 4:
      raise ValueError(
          f'SimpleBaseline expects NHWC input, got shape {x.shape}.')
    if x.shape[1] % 32 or x.shape[2] % 32:
      # Odd sizes inside the backbone would make the deconvolutions'
      # output misalign with the input grid.
      raise ValueError(
          f'SimpleBaseline: input height and width must be divisible by 32 '
          f'(the backbone stride), got {x.shape[1:3]}.')
    x = x.astype(self.dtype)

    x = resnet_features(x, train, depth=self.depth, width=self.width,
                        dtype=self.dtype)[-1]

    # Head: (deconv, BN, ReLU) triples at Sequential indices 3i, 3i+1, 3i+2.
    for i, (features, kernel) in enumerate(
        zip(self.deconv_features, self.deconv_kernels)):
      padding, output_padding = DECONV_PADDING[kernel]
      x = ConvTranspose(features, kernel_size=kernel, strides=2,
                        padding=padding, output_padding=output_padding,
                        dtype=self.dtype, name=f'deconv_layers_{3 * i}')(x)
      x = common.batch_norm(train, dtype=self.dtype,
                            name=f'deconv_layers_{3 * i + 1}')(x)
      x = common.relu(x)

    x = common.conv(self.num_keypoints, self.final_kernel, use_bias=True,
                    dtype=self.dtype, name='final_layer')(x)
    return [x.astype(jnp.float32)]


def torch_state_dict_key(path: Sequence[str]) -> str:
  """Official PyTorch state-dict key of a Flax variable path.

  Args:
    path: keys from the collection root to the leaf, e.g.
      `('layer2_0', 'downsample', 'conv', 'kernel')` in `params` or
      `('deconv_layers_4', 'mean')` in `batch_stats`.

  Returns:
    The key, e.g. `'layer2.0.downsample.0.weight'`. Kernels must be
    transposed by `torch_weight_axes(path)` when converting values.
  """
  return common.torch_state_dict_key(path)


def torch_weight_axes(path: Sequence[str]) -> tuple[int, ...] | None:
  """Axes taking a Flax kernel to the PyTorch weight layout (`transpose`).

  Args:
    path: as for `torch_state_dict_key`.

  Returns:
    `(2, 3, 0, 1)` for deconvolution kernels ((kh, kw, in, out) -> (in, out,
    kh, kw); the same axes convert back), `(3, 2, 0, 1)` for conv kernels
    (HWIO -> OIHW; convert back with `(2, 3, 1, 0)`), None for vectors.
  """
  if path[-1] != 'kernel':
    return None
  if re.fullmatch(r'deconv_layers_\d+', path[-2]):
    return (2, 3, 0, 1)
  return (3, 2, 0, 1)
