"""Building blocks shared by the convolutional pose networks (HRNet, ResNet).

Everything here follows the PyTorch originals (torchvision ResNet, the official
HRNet `pose_hrnet.py`) closely enough that their checkpoints map onto these
modules one parameter at a time:

* convolutions inside blocks have no bias; padding is explicit and equal to
  PyTorch's (`k // 2` on every side), so stride-2 convolutions give exactly
  PyTorch's output size and sampling grid (`'SAME'` would pad bottom/right
  only and shift the grid by one pixel);
* BatchNorm uses PyTorch's defaults: momentum 0.1 in PyTorch's convention
  (0.9 in Flax's), epsilon 1e-5, scale 1, bias 0;
* convolution kernels start from normal(std=0.001) and biases from 0, as the
  official HRNet `init_weights` does; blocks take `kernel_init` for networks
  initialised otherwise (torchvision's ResNet init for SimpleBaselines).

All modules take `dtype`, the computation dtype (e.g. `jnp.bfloat16`); the
parameters stay float32 and Flax computes the BatchNorm statistics in float32.

Naming: a `ConvBN` named `X` has children `conv` and `bn`, which correspond to
the entries `X.0` and `X.1` of a PyTorch `nn.Sequential(conv, bn[, relu])`.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# ImageNet statistics on [0, 1] RGB, as used by torchvision-pretrained models.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# PyTorch BatchNorm2d defaults (momentum 0.1 == Flax momentum 0.9).
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5

# Official HRNet `init_weights`: conv weights ~ N(0, 0.001^2), biases 0.
conv_kernel_init = nn.initializers.normal(stddev=0.001)
conv_bias_init = nn.initializers.zeros

Dtype = Any
Initializer = Callable[..., jax.Array]


NORMALIZATIONS = ('imagenet', 'unit', 'openpose')


def normalize_images(images: jax.Array, mode: str = 'imagenet') -> jax.Array:
  """Maps uint8 NHWC RGB images to the float32 input a network was trained on.

  Args:
    images: (..., H, W, 3) uint8 (or any real dtype in [0, 255]) RGB images.
    mode: 'imagenet', `(images / 255 - mean) / std` with ImageNet statistics
      (HRNet, SimpleBaselines, CPM); or 'unit', `images / 255` (the
      princeton-vl Stacked Hourglass); or 'openpose', the BGR image / 256 -
      0.5 (the CMU OpenPose weights).

  Returns:
    float32 array of the same shape.
  """
  if images.shape[-1] != 3:
    raise ValueError(
        f'normalize_images expects RGB images with 3 channels last (NHWC), '
        f'got shape {images.shape}.')
  if mode not in NORMALIZATIONS:
    raise ValueError(f'Unknown image normalisation {mode!r}; one of '
                     f'{NORMALIZATIONS}.')
  if mode == 'openpose':
    return images[..., ::-1].astype(jnp.float32) / 256.0 - 0.5
  x = images.astype(jnp.float32) / 255.0
  if mode == 'unit':
    return x
  mean = jnp.asarray(IMAGENET_MEAN, jnp.float32)
  std = jnp.asarray(IMAGENET_STD, jnp.float32)
  return (x - mean) / std


def model_inputs(model: nn.Module, images: jax.Array) -> jax.Array:
  """Images normalised as `model` expects (its class's `input_normalization`,
  'imagenet' unless it says otherwise), in the model's compute dtype."""
  mode = getattr(model, 'input_normalization', 'imagenet')
  return normalize_images(images, mode).astype(model.dtype)


def require_positive(module: nn.Module, fields) -> None:
  """Raises naming the first of `fields` (integer attributes) below 1."""
  for field in fields:
    if getattr(module, field) < 1:
      raise ValueError(f'{type(module).__name__}.{field} must be >= 1, got '
                       f'{getattr(module, field)}.')


def conv(features: int,
         kernel_size: int,
         *,
         strides: int = 1,
         dilation: int = 1,
         use_bias: bool = False,
         dtype: Dtype = jnp.float32,
         kernel_init: Initializer = conv_kernel_init,
         name: str | None = None) -> nn.Conv:
  """A square convolution with PyTorch-style symmetric padding
  `dilation * (k // 2)` (the output keeps the size for stride 1)."""
  pad = dilation * (kernel_size // 2)
  return nn.Conv(
      features=features,
      kernel_size=(kernel_size, kernel_size),
      strides=(strides, strides),
      kernel_dilation=(dilation, dilation),
      padding=((pad, pad), (pad, pad)),
      use_bias=use_bias,
      dtype=dtype,
      param_dtype=jnp.float32,
      kernel_init=kernel_init,
      bias_init=conv_bias_init,
      name=name)


def batch_norm(train: bool,
               *,
               dtype: Dtype = jnp.float32,
               scale_init: float = 1.0,
               name: str | None = None) -> nn.BatchNorm:
  """BatchNorm with PyTorch's defaults (scale 1, bias 0; `scale_init`
  replaces the 1); batch statistics only in training."""
  return nn.BatchNorm(
      use_running_average=not train,
      momentum=BN_MOMENTUM,
      epsilon=BN_EPSILON,
      dtype=dtype,
      param_dtype=jnp.float32,
      scale_init=nn.initializers.constant(scale_init),
      bias_init=nn.initializers.zeros,
      name=name)


class ConvBN(nn.Module):
  """Conv (no bias) + BatchNorm, optionally followed by ReLU.

  Corresponds to PyTorch's `nn.Sequential(Conv2d(bias=False), BatchNorm2d
  [, ReLU])`: child `conv` is entry `0` and child `bn` entry `1`.
  """

  features: int
  kernel_size: int = 3
  strides: int = 1
  relu: bool = True
  dtype: Dtype = jnp.float32
  kernel_init: Initializer = conv_kernel_init

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = conv(self.features, self.kernel_size, strides=self.strides,
             dtype=self.dtype, kernel_init=self.kernel_init, name='conv')(x)
    x = batch_norm(train, dtype=self.dtype, name='bn')(x)
    if self.relu:
      x = relu(x)
    return x


class BasicBlock(nn.Module):
  """ResNet basic block: two 3x3 convs + identity (expansion 1).

  Children `conv1`, `bn1`, `conv2`, `bn2` and, with `downsample=True`, a
  `ConvBN` named `downsample` (1x1 conv with the block's stride + BN) on the
  shortcut, as in torchvision and the official HRNet code.
  """

  planes: int
  strides: int = 1
  downsample: bool = False
  dtype: Dtype = jnp.float32
  kernel_init: Initializer = conv_kernel_init

  expansion = 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    residual = x
    y = conv(self.planes, 3, strides=self.strides, dtype=self.dtype,
             kernel_init=self.kernel_init, name='conv1')(x)
    y = batch_norm(train, dtype=self.dtype, name='bn1')(y)
    y = relu(y)
    y = conv(self.planes, 3, dtype=self.dtype, kernel_init=self.kernel_init,
             name='conv2')(y)
    y = batch_norm(train, dtype=self.dtype, name='bn2')(y)
    if self.downsample:
      residual = ConvBN(self.planes * self.expansion, kernel_size=1,
                        strides=self.strides, relu=False, dtype=self.dtype,
                        kernel_init=self.kernel_init,
                        name='downsample')(x, train)
    return relu(y + residual)


class Bottleneck(nn.Module):
  """ResNet bottleneck block: 1x1, 3x3 (strided), 1x1 convs (expansion 4).

  The stride sits on the 3x3 conv (torchvision "v1.5" and official HRNet);
  `dilation` dilates that conv (torchvision's `replace_stride_with_dilation`).
  Children `conv1..3`, `bn1..3` and optionally `downsample` (see BasicBlock).
  """

  planes: int
  strides: int = 1
  downsample: bool = False
  dilation: int = 1
  dtype: Dtype = jnp.float32
  kernel_init: Initializer = conv_kernel_init

  expansion = 4

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    residual = x
    y = conv(self.planes, 1, dtype=self.dtype, kernel_init=self.kernel_init,
             name='conv1')(x)
    y = batch_norm(train, dtype=self.dtype, name='bn1')(y)
    y = relu(y)
    y = conv(self.planes, 3, strides=self.strides, dilation=self.dilation,
             dtype=self.dtype, kernel_init=self.kernel_init, name='conv2')(y)
    y = batch_norm(train, dtype=self.dtype, name='bn2')(y)
    y = relu(y)
    y = conv(self.planes * self.expansion, 1, dtype=self.dtype,
             kernel_init=self.kernel_init, name='conv3')(y)
    y = batch_norm(train, dtype=self.dtype, name='bn3')(y)
    if self.downsample:
      residual = ConvBN(self.planes * self.expansion, kernel_size=1,
                        strides=self.strides, relu=False, dtype=self.dtype,
                        kernel_init=self.kernel_init,
                        name='downsample')(x, train)
    return relu(y + residual)


def relu(x: jax.Array) -> jax.Array:
  """ReLU of an activation that feeds convolutions (see `materialize`)."""
  return materialize(nn.relu(x))


def materialize(x: jax.Array) -> jax.Array:
  """Asks XLA:CPU to keep `x` in memory instead of recomputing it.

  XLA:CPU fuses cheap elementwise producers into every consumer, duplicating
  them. In a residual network the stream `relu(bn(conv(x)) + x)` is such a
  producer, so each of its consumers (the transposed copy a weight gradient
  reads, the next residual add) recomputes the stream back to the last value
  it could not fuse: the cost grows with the square of the depth. An
  optimization barrier stops fusion at the activation, which the convolution
  reads from memory anyway: the CPU train step and its compilation get much
  faster (measured in docs/performance.md, "CPU speed"). `import posejax` keeps
  barriers until fusion on CPU
  (`--xla_disable_hlo_passes=cse_barrier_expander`). Other backends fuse
  differently and get `x` unchanged.
  """
  if jax.default_backend() != 'cpu':
    return x
  return _forward_barrier(x)


@jax.custom_vjp
def _forward_barrier(x):
  return jax.lax.optimization_barrier(x)


def _forward_barrier_fwd(x):
  return _forward_barrier(x), None


def _forward_barrier_bwd(_, g):
  # The barrier is the identity. A barrier on the cotangent too would cut the
  # backward pass's own elementwise fusions (BN and ReLU gradients).
  return (g,)


_forward_barrier.defvjp(_forward_barrier_fwd, _forward_barrier_bwd)


def max_pool(x: jax.Array, window: Sequence[int], strides: Sequence[int],
             padding: Sequence[tuple[int, int]] = ((0, 0), (0, 0))) -> jax.Array:
  """`nn.max_pool` of NHWC with the same result, as a maximum of strided slices.

  Padding counts as -inf, as in `nn.max_pool` and PyTorch. The gradient is
  elementwise selects instead of XLA's select-and-scatter, which XLA:CPU
  runs as an argmax reduce-window and a scatter: ResNet's 3x3 stride-2 stem
  pool at 256x192, batch 8, took 98 ms per backward pass that way against
  21 ms. A gradient reaching a tie is shared among the tied inputs (PyTorch
  gives it to one); after a ReLU the tied inputs are zeros, whose gradient
  the ReLU drops either way.
  """
  (wh, ww), (sh, sw) = window, strides
  x = jnp.pad(x, ((0, 0), *padding, (0, 0)), constant_values=-jnp.inf)
  n, h, w, c = x.shape
  out_h, out_w = (h - wh) // sh + 1, (w - ww) // sw + 1
  out = None
  for i in range(wh):
    for j in range(ww):
      tap = jax.lax.slice(x, (0, i, j, 0),
                          (n, i + sh * (out_h - 1) + 1, j + sw * (out_w - 1) + 1, c),
                          (1, sh, sw, 1))
      out = tap if out is None else jnp.maximum(out, tap)
  return out


def upsample_nearest(x: jax.Array, factor: int) -> jax.Array:
  """Nearest-neighbour upsampling of NHWC by an integer factor (PyTorch's)."""
  return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


def _aligned_weights(size_in: int, size_out: int) -> np.ndarray:
  """(size_out, size_in) linear interpolation weights, corners aligned."""
  if size_out == 1 or size_in == 1:
    positions = np.zeros(size_out)
  else:
    positions = np.arange(size_out) * (size_in - 1) / (size_out - 1)
  low = np.clip(np.floor(positions).astype(int), 0, max(size_in - 2, 0))
  frac = positions - low
  weights = np.zeros((size_out, size_in), np.float32)
  weights[np.arange(size_out), low] += 1 - frac
  if size_in > 1:
    weights[np.arange(size_out), low + 1] += frac
  return weights


def resize_bilinear_aligned(x: jax.Array, size: Sequence[int]) -> jax.Array:
  """PyTorch's `F.interpolate(mode='bilinear', align_corners=True)` of NHWC.

  The corner pixels of input and output coincide (CPN, MSPN), unlike
  `jax.image.resize`'s half-pixel centres. Written as two small
  interpolation matrices, one per axis, each applied as a batched matrix
  product that keeps the channels innermost: a single three-operand einsum
  let XLA:CPU move the channels out and back in the backward pass, strided
  copies of about 0.3 s in CPN-R50's train step at 256x192, batch 8 (2.52 s
  per step before, 2.37 s after).
  """
  n, h, w, c = x.shape
  height, width = size
  wy = jnp.asarray(_aligned_weights(h, height), x.dtype)
  wx = jnp.asarray(_aligned_weights(w, width), x.dtype)
  rows = jnp.einsum('nyh,nhm->nym', jnp.broadcast_to(wy, (n, height, h)),
                    x.reshape(n, h, w * c))
  rows = rows.reshape(n * height, w, c)
  out = jnp.einsum('bxw,bwc->bxc', jnp.broadcast_to(wx, (n * height, width, w)),
                   rows)
  return out.reshape(n, height, width, c)


def needs_downsample(in_features: int, planes: int, strides: int,
                     expansion: int) -> bool:
  """Whether a block needs a projection shortcut (torchvision's rule)."""
  return strides != 1 or in_features != planes * expansion


# Flax variable leaf -> PyTorch parameter / buffer name.
TORCH_LEAF_NAMES = {
    'kernel': 'weight',
    'scale': 'weight',
    'bias': 'bias',
    'mean': 'running_mean',
    'var': 'running_var',
}

# `ConvBN` children -> their index in PyTorch's `nn.Sequential(conv, bn)`.
_SEQUENTIAL_CHILDREN = {'conv': '0', 'bn': '1'}


def torch_state_dict_key(path: Sequence[str],
                         sequential_children: bool = True) -> str:
  """PyTorch state-dict key of a Flax variable path.

  Shared by the per-network `torch_state_dict_key` functions. Every module
  name has its list indices turned back into PyTorch's (`stage2_0` ->
  `stage2.0`, `fuse_layers_1_0_0` -> `fuse_layers.1.0.0`), and the leaf is
  renamed by `TORCH_LEAF_NAMES` (`kernel`/`scale` -> `weight`, `bias` ->
  `bias`, `mean` -> `running_mean`, `var` -> `running_var`).

  Args:
    path: keys from the collection root to the leaf, e.g.
      `('layer1_0', 'downsample', 'conv', 'kernel')`.
    sequential_children: whether module names `conv` and `bn` are the
      entries `0` and `1` of an `nn.Sequential` (a `ConvBN`, as in HRNet and
      SimpleBaselines), or keep their names (modules whose PyTorch
      counterparts have `conv`/`bn` attributes: the Stacked Hourglass
      `Conv`, mmcv's `ConvModule` in CPM).

  Returns:
    The key, e.g. `'layer1.0.downsample.0.weight'` (or
    `'layer1.0.downsample.conv.weight'` without `sequential_children`).

  Raises:
    ValueError: if the leaf is not one of `TORCH_LEAF_NAMES`.
  """
  if path[-1] not in TORCH_LEAF_NAMES:
    raise ValueError(f'Unknown variable leaf {path[-1]!r} in {path}.')
  parts = []
  for name in path[:-1]:
    if sequential_children and name in _SEQUENTIAL_CHILDREN:
      parts.append(_SEQUENTIAL_CHILDREN[name])
    else:
      parts.append(re.sub(r'_(\d+)', r'.\1', name))
  parts.append(TORCH_LEAF_NAMES[path[-1]])
  return '.'.join(parts)
