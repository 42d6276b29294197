"""Asymmetric dilated stacked hourglass: the FashionAI 2018 winner's network.

The winning FashionAI clothing-keypoint solution (normalised error 3.30% on
the test set) describes, for each garment crop, an hourglass that is
*asymmetric* (a heavy ResNet encoder, a light decoder) and *dilated* (the
encoder's last stages keep 1/8 of the input instead of going down to 1/32:
"64 -> 32 -> 32 -> 32 instead of 64 -> 32 -> 16 -> 8" for a 256 input,
with fewer channels to keep the cost), stacked with intermediate
supervision, predicting per keypoint a disk and an offset field decoded by
voting (`codecs.OffsetVotingCodec`); its ablation starts at 4.11% NE with a
ResNet-50 encoder and one stack (49M parameters, 7.86 GFLOPs).

The write-up gives no layer table; this module's reading of it:

  encoder   ResNet-50 layout, named as torchvision's (`conv1`, `bn1`,
            `layer1_0` ...), so that an ImageNet ResNet-50 initialises it
            (posejax/checkpoints/imagenet.py): stem (7x7 stride 2, max pool)
            to 1/4, `layer1` at 1/4, `layer2` to 1/8, then `layer3` and `layer4`
            at stride 1 with their 3x3 convs dilated 2 and 4, staying at 1/8.
            `layer4_planes` (default 128, a quarter of ResNet-50's 512) is the
            channel reduction; `layer4` keeps its initialisation in an
            ImageNet start. `layer3` keeps ResNet-50's width, so that it
            loads, and at 1/8 it is most of the cost.
  decoder   light: a 1x1 conv + BN + ReLU of the encoder output to
            `features` channels, nearest 2x upsampling to 1/4, plus the 1x1
            projection (conv + BN) of `layer1`'s output, then a 3x3 conv +
            BN + ReLU; `head_0`, a 1x1 conv, gives stack 0's output.
  stack i   (i >= 1) a light hourglass on the 1/4 features: a 3x3 stride-2
            conv + BN + ReLU to 1/8, two 3x3 convs + BN + ReLU dilated 2,
            nearest upsampling plus the stack's input, a 3x3 conv + BN +
            ReLU, and `head_i`. Its input is the previous stack's input plus
            1x1 convs of that stack's features and output (as Newell et
            al.'s stacked hourglass re-injects intermediate predictions).

Every stack's output is supervised (`loss.stage_weights`). Outputs are at
1/4 of the input, `num_keypoints` channels each (the codec's channels per
keypoint times the keypoints: 3K for offset voting).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from posejax.models import common
from posejax.models.simple_baseline import resnet_kernel_init

# Bottleneck blocks of ResNet-50's four stages.
RESNET50_BLOCKS = (3, 4, 6, 3)

ASYMMETRIC_HOURGLASS_PRESETS = {
    # The ablation's starting point: a ResNet-50 encoder, one stack.
    'r50_1stack': dict(num_stacks=1),
    # With two light stacks refining the first.
    'r50_3stack': dict(num_stacks=3),
}


class AsymmetricHourglass(nn.Module):
  """Heavy dilated ResNet encoder, light decoder, light stacks after it.

  Attributes:
    num_keypoints: output channels of each stack.
    num_stacks: supervised stacks (the first is encoder + decoder).
    width: stem channels and `layer1` planes (64 in ResNet-50; smaller only
      for test networks, then no ImageNet start).
    layer4_planes: Bottleneck planes of the dilated `layer4` (ResNet-50: 512).
    features: channels of the decoder and the light stacks.
    dtype: computation dtype (parameters float32; outputs float32).
  """

  num_keypoints: int
  num_stacks: int = 1
  width: int = 64
  layer4_planes: int = 128
  features: int = 128
  dtype: common.Dtype = jnp.float32

  def __post_init__(self):
    common.require_positive(self, ('num_keypoints', 'num_stacks', 'width',
                                   'layer4_planes', 'features'))
    super().__post_init__()

  def _conv_bn_relu(self, x, features, kernel, train, name, strides=1, dilation=1):
    x = common.conv(features, kernel, strides=strides, dilation=dilation,
                    dtype=self.dtype, name=f'{name}_conv')(x)
    x = common.batch_norm(train, dtype=self.dtype, name=f'{name}_bn')(x)
    return common.relu(x)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> list[jax.Array]:
    """A list of `num_stacks` float32 outputs (N, H/4, W/4, num_keypoints).

    Args:
      x: (N, H, W, 3) normalised images; H and W divisible by 8.
      train: batch statistics and their update (True) or running averages.
    """
    if x.ndim != 4 or x.shape[1] % 8 or x.shape[2] % 8:
      raise ValueError(f'AsymmetricHourglass expects NHWC input with sides '
                       f'divisible by 8, got shape {x.shape}.')
    x = x.astype(self.dtype)
    # Encoder: ResNet-50, dilated after layer2 (1/4, 1/4, 1/8, 1/8, 1/8).
    x = common.conv(self.width, 7, strides=2, dtype=self.dtype,
                    kernel_init=resnet_kernel_init, name='conv1')(x)
    x = common.relu(common.batch_norm(train, dtype=self.dtype, name='bn1')(x))
    x = common.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    planes = (self.width, 2 * self.width, 4 * self.width, self.layer4_planes)
    strides = (1, 2, 1, 1)
    dilations = (1, 1, 2, 4)
    skip = None
    for stage, num_blocks in enumerate(RESNET50_BLOCKS):
      for b in range(num_blocks):
        stride = strides[stage] if b == 0 else 1
        x = common.Bottleneck(
            planes[stage], strides=stride, dilation=dilations[stage],
            downsample=common.needs_downsample(x.shape[-1], planes[stage], stride,
                                               common.Bottleneck.expansion),
            dtype=self.dtype, kernel_init=resnet_kernel_init,
            name=f'layer{stage + 1}_{b}')(x, train)
      if stage == 0:
        skip = x
    # Light decoder back to 1/4.
    x = self._conv_bn_relu(x, self.features, 1, train, 'decoder_reduce')
    x = common.upsample_nearest(x, 2)
    projected = common.conv(self.features, 1, dtype=self.dtype, name='decoder_skip_conv')(skip)
    x = x + common.batch_norm(train, dtype=self.dtype, name='decoder_skip_bn')(projected)
    features = self._conv_bn_relu(x, self.features, 3, train, 'decoder_out')
    stack_input = features
    outputs = []
    for i in range(self.num_stacks):
      if i > 0:
        y = self._conv_bn_relu(stack_input, self.features, 3, train,
                               f'stack{i}_down', strides=2)
        y = self._conv_bn_relu(y, self.features, 3, train, f'stack{i}_mid0', dilation=2)
        y = self._conv_bn_relu(y, self.features, 3, train, f'stack{i}_mid1', dilation=2)
        y = common.upsample_nearest(y, 2) + stack_input
        features = self._conv_bn_relu(y, self.features, 3, train, f'stack{i}_out')
      out = common.conv(self.num_keypoints, 1, use_bias=True, dtype=self.dtype,
                        name=f'head_{i}')(features)
      outputs.append(out.astype(jnp.float32))
      if i < self.num_stacks - 1:
        stack_input = (stack_input
                       + common.conv(self.features, 1, use_bias=True, dtype=self.dtype,
                                     name=f'merge_features_{i}')(features)
                       + common.conv(self.features, 1, use_bias=True, dtype=self.dtype,
                                     name=f'merge_outputs_{i}')(out))
    return outputs
