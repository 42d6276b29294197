"""Multi-Stage Pose Network (Li et al., 2019), the 2018 COCO winner.

The structure and parameter names of the official megvii-research/MSPN
(`exps/mspn.2xstg.coco/network.py`):

  top        7x7 stride-2 conv, BN, ReLU, 3x3 stride-2 max pool (1/4)
  stage s    `downsample`: a ResNet-50 encoder (`layer1`..`layer4`, 3/4/6/3
             bottlenecks, stride on the 3x3 conv), whose level outputs
             (1/4 .. 1/32), from the second stage on, each receive the
             previous stage's `skip1` and `skip2` (cross-stage
             aggregation); `upsample`: four units from the coarsest level
             (`up1`..`up4`), each a 1x1 conv of its level to 256 channels
             (`u_skip`) plus, below the coarsest, the coarser unit's output
             bilinearly upsampled (corners aligned) and 1x1-convolved
             (`up_conv`), then ReLU; a head per unit (`res_conv1` 1x1, ReLU,
             `res_conv2` 3x3 to the keypoints) resized to 1/4: four heatmap
             outputs per stage
  between    every stage but the last makes, per level, `skip1` (1x1 conv of
             the encoder's level output, ReLU) and `skip2` (1x1 conv of the
             decoder's, ReLU) at the encoder's width, which the next stage
             adds to its own level outputs, and `cross_conv` (1x1 conv of the
             finest decoder feature to 64 channels, ReLU), the next stage's
             input

Every convolution has a bias and a BatchNorm (the official `conv_bn_relu`),
the outputs' too, which starts them at unit variance: the official code
trains them against heatmaps that peak at 255, posejax's peak at 1, so the
outputs are divided by 255 (`output_scale`). Adam is blind to the loss's
scale, so the same weights follow the same trajectory, and the official
weights give the official maps / 255. For short schedules,
`output_norm_init=0` with `output_scale=1` starts every output at zero
instead (see cpn.py's docstring: Adam moves a BatchNorm scale by about the
learning rate a step; after the synthetic variant's 2,000 steps at 1/255
the output scales were 2.1, the loss had fallen from 0.061 to 0.057).
The first stage's encoder is ResNet-50; `posejax.pretrained` loads
torchvision's ImageNet ResNet-50 into it (`torch_file_key`), as the official
code's `resnet-50_rename.pth`.

Outputs: 4 x `num_stages` (B, H/4, W/4, K) maps, each stage's from the
coarsest unit; prediction decodes the last (the last stage's finest). The
official loss (coarse-to-fine supervision): L2 on each output against
Gaussians of 15, 11, 9 and 7-pixel kernels from the coarsest unit, shifted
one kernel finer (11 .. 5) in the last stage; the three coarser outputs of a
stage weigh a quarter; each stage's finest output with hard keypoint
mining (top 8 of 17). configs/mspn_coco.py sets these through
`codec.stage_sigmas`, `loss.stage_weights` and `loss.ohkm_stages`.

State-dict keys: Flax names are the official attribute paths with list
indices appended by `_` (`stage1/downsample/layer2_3/conv_bn_relu1/conv`
is `stage1.downsample.layer2.3.conv_bn_relu1.conv`); `torch_state_dict_key`.
"""

from __future__ import annotations

import re
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from posejax.codecs import heatmap
from posejax.models import common
from posejax.models import simple_baseline

MSPN_PRESETS = {
    '1stg': dict(num_stages=1),
    '2stg': dict(num_stages=2),
    '3stg': dict(num_stages=3),
    '4stg': dict(num_stages=4),
}

# Official init of the encoder: kaiming normal, fan_out, ReLU gain.
_init = simple_baseline.resnet_kernel_init
_ENCODER_BLOCKS = simple_baseline.RESNET_STAGE_BLOCKS[50]

# The official target kernels (cv2.GaussianBlur sizes, 64x48 maps): a stage's
# four outputs from the coarsest take the first four, the last stage's the
# last four (LOSS.COARSE_TO_FINE).
TARGET_KERNELS = (15, 11, 9, 7, 5)


def stage_sigmas(num_stages: int, finest: float | None = None) -> tuple[float, ...]:
  """Each output's target sigma (`codec.stage_sigmas`), in map pixels.

  The official (2.6, 2.0, 1.7, 1.4) per stage and (2.0, 1.7, 1.4, 1.1) for
  the last at 64x48 maps; with `finest`, scaled so that the last is
  `finest`.
  """
  sigmas = [heatmap.kernel_sigma(k) for k in TARGET_KERNELS]
  scale = 1.0 if finest is None else finest / sigmas[-1]
  stages = [sigmas[:4]] * (num_stages - 1) + [sigmas[1:]]
  return tuple(round(s * scale, 3) for stage in stages for s in stage)


def stage_weights(num_stages: int) -> tuple[float, ...]:
  """`loss.stage_weights` equal to the official loss: its unhalved MSE is
  twice posejax's halved one, and a stage's three coarser outputs weigh a
  quarter."""
  return (0.5, 0.5, 0.5, 2.0) * num_stages


def mined_outputs(num_stages: int) -> tuple[int, ...]:
  """`loss.ohkm_stages`: each stage's finest output, as the official loss."""
  return tuple(4 * s + 3 for s in range(num_stages))


class ConvBNReLU(nn.Module):
  """The official `conv_bn_relu`: conv with bias, BN, optional ReLU."""

  features: int
  kernel_size: int = 1
  strides: int = 1
  relu: bool = True
  norm_init: float = 1.0  # the BatchNorm's initial scale
  dtype: common.Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = common.conv(self.features, self.kernel_size, strides=self.strides,
                    use_bias=True, dtype=self.dtype, kernel_init=_init,
                    name='conv')(x)
    x = common.batch_norm(train, dtype=self.dtype, scale_init=self.norm_init,
                          name='bn')(x)
    return common.relu(x) if self.relu else x


class Bottleneck(nn.Module):
  """ResNet bottleneck of `ConvBNReLU`s (expansion 4, stride on the 3x3)."""

  planes: int
  strides: int = 1
  downsample: bool = False
  dtype: common.Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    unit = lambda f, k, name, **kw: ConvBNReLU(f, k, dtype=self.dtype, name=name, **kw)
    y = unit(self.planes, 1, 'conv_bn_relu1')(x, train)
    y = unit(self.planes, 3, 'conv_bn_relu2', strides=self.strides)(y, train)
    y = unit(4 * self.planes, 1, 'conv_bn_relu3', relu=False)(y, train)
    if self.downsample:
      x = unit(4 * self.planes, 1, 'downsample', strides=self.strides,
               relu=False)(x, train)
    return common.relu(y + x)


class Encoder(nn.Module):
  """The official `ResNet_downsample_module`: four ResNet-50 levels."""

  width: int = 64
  dtype: common.Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, skips, train: bool) -> list[jax.Array]:
    """Level outputs, finest first; `skips` (finest first) are added to them."""
    levels = []
    for stage, num_blocks in enumerate(_ENCODER_BLOCKS):
      planes = self.width * 2**stage
      for b in range(num_blocks):
        strides = 2 if stage > 0 and b == 0 else 1
        x = Bottleneck(planes, strides, common.needs_downsample(
            x.shape[-1], planes, strides, 4), self.dtype,
                       name=f'layer{stage + 1}_{b}')(x, train)
      if skips is not None:
        x = x + skips[stage]
      levels.append(x)
    return levels


class Decoder(nn.Module):
  """The official `Upsample_module`: four units from the coarsest level."""

  num_keypoints: int
  features: int = 256
  make_skips: bool = False
  cross_features: int = 64
  output_norm_init: float = 1.0
  dtype: common.Dtype = jnp.float32

  @nn.compact
  def __call__(self, levels: Sequence[jax.Array], output_size, train: bool):
    """(outputs coarsest first, skips finest first or None, the next
    stage's input or None) from the encoder's `levels` (finest first)."""
    unit = lambda f, k, name, **kw: ConvBNReLU(f, k, dtype=self.dtype, name=name, **kw)
    outputs, skips, feature = [], [], None
    for u, level in enumerate(reversed(levels)):
      name = f'up{u + 1}'
      out = unit(self.features, 1, f'{name}_u_skip', relu=False)(level, train)
      if feature is not None:
        up = common.resize_bilinear_aligned(feature, level.shape[1:3])
        out = out + unit(self.features, 1, f'{name}_up_conv', relu=False)(up, train)
      feature = common.relu(out)
      y = unit(self.features, 1, f'{name}_res_conv1')(feature, train)
      y = unit(self.num_keypoints, 3, f'{name}_res_conv2', relu=False,
               norm_init=self.output_norm_init)(y, train)
      outputs.append(common.resize_bilinear_aligned(y, output_size))
      if self.make_skips:
        width = level.shape[-1]
        skips.append(unit(width, 1, f'{name}_skip1')(level, train)
                     + unit(width, 1, f'{name}_skip2')(feature, train))
    if not self.make_skips:
      return outputs, None, None
    cross = unit(self.cross_features, 1, f'up{len(levels)}_cross_conv')(feature, train)
    return outputs, skips[::-1], cross


class MSPN(nn.Module):
  """Stages of ResNet-50 encoder-decoders; defaults are the 4-stage MSPN.

  Attributes:
    num_keypoints: heatmap channels of every output.
    num_stages: encoder-decoder stages (1-4 published).
    width: the stem's and the first encoder level's planes, and the
      cross-stage input's channels (64 published; smaller for tests).
    decoder_features: the decoders' channels (UPSAMPLE_CHANNEL_NUM, 256).
    output_scale: multiplies every output (1/255: the official peak-255
      targets as posejax's peak-1 ones; see the module docstring).
    output_norm_init: the initial scale of the BatchNorm that ends every
      output (1 as published; see the module docstring).
    dtype: computation dtype (params stay float32; outputs are float32).
  """

  num_keypoints: int
  num_stages: int = 4
  width: int = 64
  decoder_features: int = 256
  output_scale: float = 1 / 255
  output_norm_init: float = 1.0
  dtype: common.Dtype = jnp.float32

  def __post_init__(self):
    common.require_positive(self, ('num_keypoints', 'num_stages', 'width',
                                   'decoder_features'))
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> list[jax.Array]:
    """4 x num_stages float32 (N, H/4, W/4, K) maps; H, W divisible by 32."""
    if x.ndim != 4 or x.shape[1] % 32 or x.shape[2] % 32:
      raise ValueError(
          f'MSPN expects NHWC input with height and width divisible by 32 '
          f'(the encoder stride), got shape {x.shape}.')
    output_size = (x.shape[1] // 4, x.shape[2] // 4)
    x = ConvBNReLU(self.width, 7, strides=2, dtype=self.dtype,
                   name='top_conv')(x.astype(self.dtype), train)
    x = common.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    outputs, skips = [], None
    for s in range(self.num_stages):
      last = s == self.num_stages - 1
      levels = Encoder(self.width, self.dtype, name=f'stage{s}_downsample')(
          x, skips, train)
      stage_outputs, skips, x = Decoder(
          self.num_keypoints, self.decoder_features, make_skips=not last,
          cross_features=self.width, output_norm_init=self.output_norm_init,
          dtype=self.dtype, name=f'stage{s}_upsample')(levels, output_size, train)
      outputs.extend(stage_outputs)
    return [self.output_scale * y.astype(jnp.float32) for y in outputs]


def torch_state_dict_key(path: Sequence[str]) -> str:
  """The official state-dict key of a Flax variable path.

  Module names join the official attributes with `_` (`stage0_upsample`,
  `up2_u_skip`, `top_conv`), which become dots; `ConvBNReLU` children keep
  their names `conv` and `bn`, as the official `conv_bn_relu`.
  """
  key = common.torch_state_dict_key(path, sequential_children=False)
  key = re.sub(r'^top_conv\.', 'top.conv.', key)
  key = re.sub(r'^(stage\d+)_(downsample|upsample)\.', r'\1.\2.', key)
  return re.sub(r'\.(up\d)_', r'.\1.', key)


# torchvision ResNet-50 -> the first stage's encoder, as the official
# resnet-50_rename.pth.
_TORCHVISION = (
    (r'^conv1\.', 'top.conv.conv.'),
    (r'^bn1\.', 'top.conv.bn.'),
    (r'^(layer\d\.\d+)\.conv(\d)\.', r'stage0.downsample.\1.conv_bn_relu\2.conv.'),
    (r'^(layer\d\.\d+)\.bn(\d)\.', r'stage0.downsample.\1.conv_bn_relu\2.bn.'),
    (r'^(layer\d\.\d+)\.downsample\.0\.', r'stage0.downsample.\1.downsample.conv.'),
    (r'^(layer\d\.\d+)\.downsample\.1\.', r'stage0.downsample.\1.downsample.bn.'),
)


def torch_file_key(key: str) -> str:
  """torchvision's ResNet-50 keys onto the first stage (`layer1.0.conv1.weight`
  -> `stage0.downsample.layer1.0.conv_bn_relu1.conv.weight`); the official
  keys unchanged."""
  for pattern, replacement in _TORCHVISION:
    renamed = re.sub(pattern, replacement, key)
    if renamed != key:
      return renamed
  return key
