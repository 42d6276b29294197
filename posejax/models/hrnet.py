"""HRNet for top-down pose estimation (Sun et al., CVPR 2019).

A Flax Linen port of `lib/models/pose_hrnet.py` of the official
deep-high-resolution-net.pytorch, with the same structure:

  stem      two stride-2 3x3 conv+BN+ReLU (`conv1`/`bn1`, `conv2`/`bn2`)
  stage 1   `layer1`: Bottlenecks at 1/4 resolution (64 -> 256 channels)
  stage s   `transition{s-1}` makes the branches of stage s (s = 2..4), then
            `num_modules[s-2]` high-resolution modules, each running
            `num_blocks` BasicBlocks per branch and fusing all branches
  head      `final_layer`: 1x1 conv with bias on the highest-resolution branch

The last module of the last stage only outputs the highest-resolution branch
(`multi_scale_output=False` in the original).

HRNetV2 for facial landmarks (`head='concat'`, preset `v2_w18`) follows
`lib/models/hrnet.py` of the official HRNet-Facial-Landmark-Detection instead:
the last module keeps every branch, the fusion upsamples bilinearly
(`fuse_upsample='bilinear'`), and the head upsamples all branches bilinearly
to the highest resolution, concatenates them (18+36+72+144 = 270 channels for
W18) and applies `head.0` (1x1 conv with bias, 270 -> 270), `head.1` (BN),
ReLU and `head.3` (1x1 conv with bias to the landmarks); output stride 4.
Its BatchNorm momentum is 0.01 in PyTorch's convention; here it stays at 0.1
like every other network (it only changes how fast the running statistics
follow the batches, not the function or the parameters).

HigherHRNet for bottom-up pose (`head='higher'`, presets `higher_w32`,
`higher_w48`; Cheng et al., CVPR 2020) follows `lib/models/pose_higher_hrnet.py`
of the official HigherHRNet-Human-Pose-Estimation: the pose HRNet's backbone,
then `final_layers.0` (1x1 conv with bias on branch 0) gives the first
output at 1/4, `num_keypoints` channels (the associative-embedding codec's K
heatmaps and K tags, posejax/codecs/embedding.py); `deconv_layers.0`
concatenates branch 0 with that output, enlarges it 2x
(ConvTranspose(widths[0], kernel 4, stride 2, padding 1, no bias) + BN +
ReLU, entries `0.0`, `0.1`) and refines it by `deconv_blocks` BasicBlocks
(entries `1.0` .. `4.0`); `final_layers.1` (1x1 conv with bias) gives the
second output at 1/2: `num_keypoints // 2` channels, the heatmaps only.

Parameter names and the official PyTorch state-dict keys
--------------------------------------------------------
Submodules are named after the PyTorch attributes, with list indices appended
by `_`: PyTorch `stage3.1.branches.2.0.conv1.weight` is Flax
`stage3_1/branches_2_0/conv1/kernel`. Every `nn.Sequential(conv, bn[, relu])`
of the original is a `ConvBN` whose children `conv` and `bn` are its entries
`0` and `1`:

  transition1.0.{0,1}           transition1_0/{conv,bn}       (256 -> 32)
  transition1.1.0.{0,1}         transition1_1_0/{conv,bn}     (new branch)
  stage2.0.fuse_layers.0.1.{0,1}  stage2_0/fuse_layers_0_1/{conv,bn}   (j > i)
  stage2.0.fuse_layers.1.0.0.{0,1}  stage2_0/fuse_layers_1_0_0/{conv,bn} (j < i)
  layer1.0.downsample.{0,1}     layer1_0/downsample/{conv,bn}
  head.0 / head.1 / head.3      head_0 / head_1 / head_3      (concat head)

Leaves: `kernel` -> `weight` (HWIO -> OIHW: `kernel.transpose(3, 2, 0, 1)`),
BN `scale` -> `weight`, `bias` -> `bias`, batch_stats `mean` -> `running_mean`,
`var` -> `running_var`. `torch_state_dict_key` implements exactly this mapping.
PyTorch's `num_batches_tracked` buffers have no counterpart (unused with a
fixed momentum).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from posejax.models import common
from posejax.models.simple_baseline import ConvTranspose

HRNET_PRESETS = {
    'w18': dict(widths=(18, 36, 72, 144)),
    # HigherHRNet (bottom-up, COCO at 512 / 640).
    'higher_w32': dict(widths=(32, 64, 128, 256), head='higher'),
    'higher_w48': dict(widths=(48, 96, 192, 384), head='higher'),
    'w32': dict(widths=(32, 64, 128, 256)),
    'w48': dict(widths=(48, 96, 192, 384)),
    # HRNetV2-W18 for facial landmarks (WFLW, 300W, ... at 256x256).
    'v2_w18': dict(widths=(18, 36, 72, 144), head='concat',
                   fuse_upsample='bilinear'),
}

HEADS = ('single', 'concat', 'higher')
UPSAMPLINGS = ('nearest', 'bilinear')


def _upsample_bilinear(x: jax.Array, size: Sequence[int]) -> jax.Array:
  """Bilinear resize of NHWC to `size` (height, width), as PyTorch's.

  Matches `F.interpolate(x, size, mode='bilinear', align_corners=False)`:
  both sample at half-pixel centres, and where PyTorch clamps a sample
  position to the border, `jax.image.resize` renormalises the weights of the
  pixels inside, which gives the same value when enlarging.
  """
  return jax.image.resize(x, (x.shape[0], *size, x.shape[-1]),
                          method='bilinear')


class HighResolutionModule(nn.Module):
  """One multi-resolution module: parallel branches, then exchange (fusion).

  Attributes:
    widths: channels of each branch, highest resolution first. The inputs must
      already have these channels (the transitions take care of that).
    num_blocks: BasicBlocks per branch.
    multi_scale_output: if False, only fuse into (and return) branch 0.
    upsample: how lower-resolution branches are enlarged in the fusion,
      'nearest' (pose HRNet) or 'bilinear' (HRNetV2).
    dtype: computation dtype.
  """

  widths: tuple[int, ...]
  num_blocks: int = 4
  multi_scale_output: bool = True
  upsample: str = 'nearest'
  dtype: common.Dtype = jnp.float32

  @nn.compact
  def __call__(self, xs: Sequence[jax.Array],
               train: bool = False) -> list[jax.Array]:
    num_branches = len(self.widths)
    if len(xs) != num_branches:
      raise ValueError(
          f'{self.name}: expected {num_branches} branches, got {len(xs)}.')

    xs = list(xs)
    for b, width in enumerate(self.widths):
      x = xs[b]
      for k in range(self.num_blocks):
        downsample = common.needs_downsample(
            x.shape[-1], width, 1, common.BasicBlock.expansion)
        x = common.BasicBlock(width, downsample=downsample, dtype=self.dtype,
                              name=f'branches_{b}_{k}')(x, train)
      xs[b] = x
    if num_branches == 1:
      return xs

    outputs = []
    for i in range(num_branches if self.multi_scale_output else 1):
      y = None
      for j in range(num_branches):
        if j == i:
          z = xs[j]
        elif j > i:
          # Lower resolution: 1x1 conv to branch i's width, then upsample.
          z = common.ConvBN(self.widths[i], kernel_size=1, relu=False,
                            dtype=self.dtype,
                            name=f'fuse_layers_{i}_{j}')(xs[j], train)
          if self.upsample == 'bilinear':
            # To branch i's exact size, as the original's F.interpolate.
            z = _upsample_bilinear(z, xs[i].shape[1:3])
          else:
            z = common.upsample_nearest(z, 2**(j - i))
          if z.shape[1:3] != xs[i].shape[1:3]:
            raise ValueError(
                f'{self.name}: branch {j} upsampled to {z.shape[1:3]} does '
                f'not match branch {i} of size {xs[i].shape[1:3]}; the input '
                f'height and width must be divisible by '
                f'{2**(num_branches + 1)} for {num_branches} branches.')
        else:
          # Higher resolution: (i - j) stride-2 3x3 convs; the intermediate
          # ones keep branch j's width and have a ReLU, the last does not.
          z = xs[j]
          for k in range(i - j):
            last = k == i - j - 1
            z = common.ConvBN(self.widths[i] if last else self.widths[j],
                              kernel_size=3, strides=2, relu=not last,
                              dtype=self.dtype,
                              name=f'fuse_layers_{i}_{j}_{k}')(z, train)
        y = z if y is None else y + z
      outputs.append(common.relu(y))
    return outputs


class HRNet(nn.Module):
  """Pose HRNet; defaults are HRNet-W32 (see `HRNET_PRESETS`).

  Attributes:
    num_keypoints: output heatmap channels.
    stem_width: channels of the two stem convs; also the Bottleneck `planes`
      of stage 1 (which thus outputs `4 * stem_width` channels). Both are 64
      in the original, where they are hard-coded.
    stage1_blocks: Bottlenecks in stage 1 (`layer1`).
    widths: branch widths of the last stage, highest resolution first. Stage
      s (2 <= s <= len(widths)) has branches `widths[:s]`.
    num_modules: high-resolution modules in stages 2, 3, ...; one entry per
      stage, so `len(num_modules) == len(widths) - 1`.
    num_blocks: BasicBlocks per branch in each module.
    head: 'single', a 1x1 conv on the highest-resolution branch (pose HRNet),
      or 'concat', the HRNetV2 head on all branches (see the module
      docstring).
    fuse_upsample: 'nearest' (pose HRNet) or 'bilinear' (HRNetV2) upsampling
      in the fusion of the high-resolution modules.
    deconv_blocks: BasicBlocks after HigherHRNet's deconvolution ('higher').
    dtype: computation dtype (params stay float32; output is float32).
  """

  num_keypoints: int
  stem_width: int = 64
  stage1_blocks: int = 4
  widths: tuple[int, ...] = (32, 64, 128, 256)
  num_modules: tuple[int, ...] = (1, 4, 3)
  num_blocks: int = 4
  head: str = 'single'
  fuse_upsample: str = 'nearest'
  deconv_blocks: int = 4
  dtype: common.Dtype = jnp.float32

  def __post_init__(self):
    # Fail at construction (before any tracing) on inconsistent structure.
    if len(self.widths) < 2:
      raise ValueError(
          f'HRNet.widths needs at least 2 branches, got {self.widths}.')
    if len(self.num_modules) != len(self.widths) - 1:
      raise ValueError(
          f'HRNet.num_modules needs one entry per stage 2..{len(self.widths)} '
          f'(len(widths) - 1 = {len(self.widths) - 1}), got '
          f'{self.num_modules}.')
    common.require_positive(
        self, ('num_keypoints', 'stem_width', 'stage1_blocks', 'num_blocks'))
    if min(self.widths) < 1 or min(self.num_modules) < 1:
      raise ValueError(
          f'HRNet.widths and HRNet.num_modules must be positive, got '
          f'{self.widths} and {self.num_modules}.')
    if self.head == 'higher' and self.num_keypoints % 2:
      raise ValueError(
          "HRNet head='higher' outputs K heatmaps and K tags: num_keypoints "
          f'(the channels of its first output) must be even, got '
          f'{self.num_keypoints}; use it with codec.name='
          "'associative_embedding'.")
    if self.head not in HEADS:
      raise ValueError(
          f'HRNet.head must be one of {HEADS}, got {self.head!r}.')
    if self.fuse_upsample not in UPSAMPLINGS:
      raise ValueError(
          f'HRNet.fuse_upsample must be one of {UPSAMPLINGS}, got '
          f'{self.fuse_upsample!r}.')
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> list[jax.Array]:
    """Heatmaps at 1/4 of the input resolution.

    Args:
      x: (N, H, W, 3) normalised images (see `common.model_inputs`).
      train: batch statistics and their update (True) or running averages.

    Returns:
      A one-element list with float32 heatmaps (N, H/4, W/4, num_keypoints);
      with head='higher', two: that, and (N, H/2, W/2, num_keypoints // 2).
    """
    if x.ndim != 4:
      raise ValueError(f'HRNet expects NHWC input, got shape {x.shape}.')
    x = x.astype(self.dtype)

    # Stem: two stride-2 3x3 convs to 1/4 resolution.
    x = common.conv(self.stem_width, 3, strides=2, dtype=self.dtype,
                    name='conv1')(x)
    x = common.batch_norm(train, dtype=self.dtype, name='bn1')(x)
    x = common.relu(x)
    x = common.conv(self.stem_width, 3, strides=2, dtype=self.dtype,
                    name='conv2')(x)
    x = common.batch_norm(train, dtype=self.dtype, name='bn2')(x)
    x = common.relu(x)

    # Stage 1.
    planes = self.stem_width
    for k in range(self.stage1_blocks):
      downsample = common.needs_downsample(
          x.shape[-1], planes, 1, common.Bottleneck.expansion)
      x = common.Bottleneck(planes, downsample=downsample, dtype=self.dtype,
                            name=f'layer1_{k}')(x, train)

    # Stages 2 .. len(widths).
    xs = [x]
    num_stages = len(self.widths)
    for stage in range(2, num_stages + 1):
      stage_widths = tuple(self.widths[:stage])
      xs = self._transition(stage - 1, xs, stage_widths, train)
      num_modules = self.num_modules[stage - 2]
      for m in range(num_modules):
        # The single head reads branch 0 only: the very last module need not
        # fuse into the other branches.
        last = stage == num_stages and m == num_modules - 1
        xs = HighResolutionModule(
            stage_widths, num_blocks=self.num_blocks,
            multi_scale_output=not last or self.head == 'concat',
            upsample=self.fuse_upsample, dtype=self.dtype,
            name=f'stage{stage}_{m}')(xs, train)

    if self.head == 'concat':
      size = xs[0].shape[1:3]
      x = jnp.concatenate(
          [xs[0]] + [_upsample_bilinear(z, size) for z in xs[1:]], axis=-1)
      # Named after the entries 0, 1 and 3 (after the ReLU) of the
      # original's `head` Sequential; its first conv has a bias before BN.
      x = common.conv(x.shape[-1], 1, use_bias=True, dtype=self.dtype,
                      name='head_0')(x)
      x = common.batch_norm(train, dtype=self.dtype, name='head_1')(x)
      x = common.relu(x)
      x = common.conv(self.num_keypoints, 1, use_bias=True, dtype=self.dtype,
                      name='head_3')(x)
      return [x.astype(jnp.float32)]

    if self.head == 'higher':
      return self._higher_head(xs[0], train)
    x = common.conv(self.num_keypoints, 1, use_bias=True, dtype=self.dtype,
                    name='final_layer')(xs[0])
    return [x.astype(jnp.float32)]

  def _higher_head(self, x: jax.Array, train: bool) -> list[jax.Array]:
    """HigherHRNet's two outputs (see the module docstring)."""
    first = common.conv(self.num_keypoints, 1, use_bias=True, dtype=self.dtype,
                        name='final_layers_0')(x)
    width = self.widths[0]
    y = jnp.concatenate([x, first.astype(x.dtype)], axis=-1)
    y = ConvTranspose(width, kernel_size=4, strides=2, padding=1,
                      dtype=self.dtype, name='deconv_layers_0_0_0')(y)
    y = common.relu(common.batch_norm(train, dtype=self.dtype,
                                      name='deconv_layers_0_0_1')(y))
    for j in range(1, self.deconv_blocks + 1):
      y = common.BasicBlock(width, dtype=self.dtype,
                            name=f'deconv_layers_0_{j}_0')(y, train)
    second = common.conv(self.num_keypoints // 2, 1, use_bias=True,
                         dtype=self.dtype, name='final_layers_1')(y)
    return [first.astype(jnp.float32), second.astype(jnp.float32)]

  def _transition(self, index: int, xs: list[jax.Array],
                  widths: tuple[int, ...], train: bool) -> list[jax.Array]:
    """`transition{index}`: adapts existing branches and creates new ones.

    Existing branch i gets a 3x3 conv+BN+ReLU (`transition{index}_{i}`) only
    if its width changes (only the 4*stem_width -> widths[0] step of stage 1 in
    practice). Each new branch i is made from the lowest-resolution previous
    branch by a chain of stride-2 3x3 conv+BN+ReLU
    (`transition{index}_{i}_{k}`), only one conv when one branch is added.
    """
    num_prev = len(xs)
    outputs = []
    for i, width in enumerate(widths):
      if i < num_prev:
        x = xs[i]
        if x.shape[-1] != width:
          x = common.ConvBN(width, kernel_size=3, dtype=self.dtype,
                            name=f'transition{index}_{i}')(x, train)
      else:
        x = xs[-1]
        num_convs = i + 1 - num_prev
        for k in range(num_convs):
          features = width if k == num_convs - 1 else x.shape[-1]
          x = common.ConvBN(features, kernel_size=3, strides=2,
                            dtype=self.dtype,
                            name=f'transition{index}_{i}_{k}')(x, train)
      outputs.append(x)
    return outputs


def torch_state_dict_key(path: Sequence[str]) -> str:
  """Official PyTorch state-dict key of a Flax variable path.

  Args:
    path: keys from the collection root to the leaf, e.g.
      `('stage2_0', 'fuse_layers_1_0_0', 'conv', 'kernel')` in `params` or
      `('bn1', 'mean')` in `batch_stats`.

  Returns:
    The key, e.g. `'stage2.0.fuse_layers.1.0.0.0.weight'`. Kernels must be
    transposed from HWIO to OIHW when converting values.
  """
  return common.torch_state_dict_key(path)


def torch_weight_axes(path: Sequence[str]) -> tuple[int, ...] | None:
  """Axes taking a Flax kernel to the PyTorch weight layout (`transpose`):
  (2, 3, 0, 1) for HigherHRNet's deconvolution, (3, 2, 0, 1) for convs."""
  if path[-1] != 'kernel':
    return None
  if path[-2] == 'deconv_layers_0_0_0':
    return (2, 3, 0, 1)
  return (3, 2, 0, 1)
