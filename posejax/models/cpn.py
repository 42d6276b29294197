"""Cascaded Pyramid Network (Chen et al., CVPR 2018), the 2017 COCO winner.

The structure and parameter names of GengDavid/pytorch-cpn
(`networks/network.py`, `globalNet.py`, `refineNet.py`), the PyTorch port
of the published TensorFlow code:

  resnet      torchvision's ResNet-50/101 (`simple_baseline.resnet_features`),
              returning C5, C4, C3, C2 (1/32 .. 1/4 of the input)
  global_net  per level i (C5 first): `laterals.i` (1x1 conv to 256, BN,
              ReLU) plus, below C5, the coarser level's `upsamples.(i-1)`
              (bilinear x2 with corners aligned, 1x1 conv, BN); then
              `predict.i`: 1x1 conv, BN, ReLU, 3x3 conv to the keypoints,
              bilinear to the output size (1/4), BN: four heatmap outputs
  refine_net  `cascade.i`: 3 - i bottlenecks on level i's pyramid feature
              (C5's gets three, C2's none), bilinear to 1/4; the four
              concatenated (1024 channels), `final_predict`: one bottleneck,
              a 3x3 conv to the keypoints, BN: the fifth output

The refine bottlenecks are the port's: expansion 2 (128 -> 256 channels)
and always a projection shortcut. Every output ends in a BatchNorm, which
starts it at unit variance: the port trains it against heatmaps that peak
at 255, posejax's peak at 1, so the outputs are divided by 255
(`output_scale`). Adam is blind to the loss's scale, so the same weights
follow the same trajectory, and the port's weights give its maps / 255.
That start suits the port's 40 COCO epochs, not a short schedule: Adam
moves a BatchNorm scale by about the learning rate a step, so the scale
stays near 1 where the fit needs tens (output_scale 1/255) and the loss
hardly falls; unscaled (output_scale 1), the unit-variance start did not
train at all in the synthetic variant (PCK 0.303, the mean pose's 0.325).
`output_norm_init=0` with `output_scale=1` starts every output at zero, as
a plain final convolution does (the synthetic variant: AP 0.372 against
0.170; docs/results.md). Every convolution is bias-free and
initialised N(0, 2 / (k * k * out)) (the port's, torchvision's kaiming
fan-out).

Outputs: five (B, H/4, W/4, K) maps, the four GlobalNet levels from the
coarsest, then RefineNet's, which prediction decodes. The paper supervises
the GlobalNet levels with L2 against Gaussians that narrow toward the finest
level (the port's 15, 11, 9 and 7-pixel kernels) and RefineNet with L2 on
the 8 hardest of 17 keypoints (online hard keypoint mining); the recipes
set these through `codec.stage_sigmas` and `loss.ohkm_stages`
(configs/cpn_coco.py).

State-dict keys: Flax names are the port's attribute paths with list
indices appended by `_` (`global_net/predict_2_3` is
`global_net.predict.2.3`), `ConvBN` children `conv`/`bn` are entries 0/1 of
their `nn.Sequential`; `torch_state_dict_key` maps a variable path to its key.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from posejax.codecs import heatmap
from posejax.models import common
from posejax.models import simple_baseline

CPN_PRESETS = {
    'r50': dict(depth=50),
    'r101': dict(depth=101),
}

_init = simple_baseline.resnet_kernel_init

# The port's target kernels (cv2.GaussianBlur sizes): the GlobalNet levels
# from the coarsest, then RefineNet; at 256x192 (64x48 maps) and 384x288.
TARGET_KERNELS = (15, 11, 9, 7, 7)
TARGET_KERNELS_384 = (23, 17, 13, 9, 9)


def stage_sigmas(finest: float | None = None,
                 kernels: Sequence[int] = TARGET_KERNELS) -> tuple[float, ...]:
  """Each output's target sigma (`codec.stage_sigmas`), in map pixels.

  The port's (2.6, 2.0, 1.7, 1.4, 1.4) at 64x48 maps (`TARGET_KERNELS_384`:
  3.8, 2.9, 2.3, 1.7, 1.7); with `finest`, scaled so that the last is
  `finest` (for other map sizes).
  """
  sigmas = [heatmap.kernel_sigma(k) for k in kernels]
  scale = 1.0 if finest is None else finest / sigmas[-1]
  return tuple(round(s * scale, 3) for s in sigmas)


class RefineBottleneck(common.Bottleneck):
  """The port's RefineNet bottleneck: `planes * 2` out, always projected."""

  expansion = 2


class GlobalNet(nn.Module):
  """Feature pyramid with a heatmap head per level (see the module docstring)."""

  num_keypoints: int
  features: int = 256
  output_norm_init: float = 1.0
  dtype: common.Dtype = jnp.float32

  @nn.compact
  def __call__(self, levels: Sequence[jax.Array], output_size, train: bool):
    def conv(features, kernel, name):
      return common.conv(features, kernel, dtype=self.dtype, kernel_init=_init,
                         name=name)

    def bn(name, scale_init=1.0):
      return common.batch_norm(train, dtype=self.dtype, scale_init=scale_init,
                               name=name)

    pyramid, outputs = [], []
    for i, level in enumerate(levels):
      feature = common.ConvBN(self.features, 1, dtype=self.dtype, kernel_init=_init,
                              name=f'laterals_{i}')(level, train)
      if i > 0:
        feature = feature + up
      pyramid.append(feature)
      if i < len(levels) - 1:
        up = common.resize_bilinear_aligned(
            feature, (2 * feature.shape[1], 2 * feature.shape[2]))
        up = bn(f'upsamples_{i}_2')(conv(self.features, 1, f'upsamples_{i}_1')(up))
      y = common.relu(bn(f'predict_{i}_1')(
          conv(self.features, 1, f'predict_{i}_0')(feature)))
      y = conv(self.num_keypoints, 3, f'predict_{i}_3')(y)
      y = common.resize_bilinear_aligned(y, output_size)
      outputs.append(bn(f'predict_{i}_5', self.output_norm_init)(y))
    return pyramid, outputs


class RefineNet(nn.Module):
  """Bottlenecks per level, upsampled, concatenated, one more and a head."""

  num_keypoints: int
  planes: int = 128
  output_norm_init: float = 1.0
  dtype: common.Dtype = jnp.float32

  @nn.compact
  def __call__(self, pyramid: Sequence[jax.Array], output_size, train: bool):
    block = lambda name: RefineBottleneck(self.planes, downsample=True,
                                          dtype=self.dtype, kernel_init=_init,
                                          name=name)
    upsampled = []
    for i, feature in enumerate(pyramid):
      for j in range(len(pyramid) - 1 - i):
        feature = block(f'cascade_{i}_{j}')(feature, train)
      upsampled.append(common.resize_bilinear_aligned(feature, output_size))
    y = block('final_predict_0')(jnp.concatenate(upsampled, axis=-1), train)
    y = common.conv(self.num_keypoints, 3, dtype=self.dtype, kernel_init=_init,
                    name='final_predict_1')(y)
    return common.batch_norm(train, dtype=self.dtype, scale_init=self.output_norm_init,
                             name='final_predict_2')(y)


class CPN(nn.Module):
  """ResNet, GlobalNet and RefineNet; defaults are CPN-R50 (the port's CPN50).

  Attributes:
    num_keypoints: heatmap channels of every output.
    depth: the ResNet's, 50 or 101 (`simple_baseline.RESNET_STAGE_BLOCKS`;
      152 builds too).
    width: the ResNet's stem width (64 published; smaller for tests).
    pyramid_features: GlobalNet's channels (256 published).
    refine_planes: the RefineNet bottlenecks' inner channels (128).
    output_scale: multiplies every output (1/255: the port's peak-255
      targets as posejax's peak-1 ones; see the module docstring).
    output_norm_init: the initial scale of the BatchNorm that ends every
      output (1 as published; see the module docstring).
    dtype: computation dtype (params stay float32; outputs are float32).
  """

  num_keypoints: int
  depth: int = 50
  width: int = 64
  pyramid_features: int = 256
  refine_planes: int = 128
  output_scale: float = 1 / 255
  output_norm_init: float = 1.0
  dtype: common.Dtype = jnp.float32

  def __post_init__(self):
    if self.depth not in simple_baseline.RESNET_STAGE_BLOCKS:
      raise ValueError(
          f'CPN.depth must be one of {sorted(simple_baseline.RESNET_STAGE_BLOCKS)}, '
          f'got {self.depth}.')
    common.require_positive(self, ('num_keypoints', 'width', 'pyramid_features',
                                   'refine_planes'))
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> list[jax.Array]:
    """Five float32 (N, H/4, W/4, K) maps: GlobalNet's four levels, then
    RefineNet's. H and W must be divisible by 32."""
    if x.ndim != 4 or x.shape[1] % 32 or x.shape[2] % 32:
      raise ValueError(
          f'CPN expects NHWC input with height and width divisible by 32 '
          f'(the ResNet stride), got shape {x.shape}.')
    output_size = (x.shape[1] // 4, x.shape[2] // 4)
    features = ResNet(self.depth, self.width, self.dtype, name='resnet')(
        x.astype(self.dtype), train)
    levels = features[::-1]  # C5 first, as the port
    pyramid, outputs = GlobalNet(self.num_keypoints, self.pyramid_features,
                                 self.output_norm_init, self.dtype,
                                 name='global_net')(levels, output_size, train)
    refined = RefineNet(self.num_keypoints, self.refine_planes,
                        self.output_norm_init, self.dtype,
                        name='refine_net')(pyramid, output_size, train)
    return [self.output_scale * y.astype(jnp.float32) for y in (*outputs, refined)]


class ResNet(nn.Module):
  """torchvision's ResNet trunk as one child (`resnet.` in the port's keys)."""

  depth: int = 50
  width: int = 64
  dtype: common.Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> list[jax.Array]:
    return simple_baseline.resnet_features(x, train, depth=self.depth,
                                           width=self.width, dtype=self.dtype)


def torch_state_dict_key(path: Sequence[str]) -> str:
  """The port's state-dict key of a Flax variable path (`resnet.layer1.0.conv1.weight`)."""
  return common.torch_state_dict_key(path)


def torch_file_key(key: str) -> str:
  """torchvision's ResNet keys (`layer1.0.conv1.weight`, `fc.weight`) under
  the port's `resnet.`; the port's own keys unchanged."""
  if key.startswith(('conv1.', 'bn1.', 'layer', 'fc.')):
    return 'resnet.' + key
  return key
