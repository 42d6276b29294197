"""OpenPose's body network (Cao et al., CVPR 2017): CPM stages in two branches.

The CMU COCO body model of "Realtime Multi-Person 2D Pose Estimation using
Part Affinity Fields", in the layout of its PyTorch port
(Hzzone/pytorch-openpose `src/model.py`, `bodypose_model`, whose
`body_pose_model.pth` holds the converted Caffe weights):

  model0     the first ten convolutions of VGG-19 (conv1_1 ... conv4_2, 3x3
             with bias and ReLU, a 2x2 max-pool after conv1_2, conv2_2 and
             conv3_4: stride 8), then conv4_3_CPM (3x3, 256) and conv4_4_CPM
             (3x3, 128): the image features F
  stage 1    two branches on F, each three 3x3 convolutions (128), a 1x1 to
             512 and a 1x1 to the branch's maps: L1 the part affinity fields
             (2 channels per limb, 38 for COCO's 19), L2 the confidence maps
             (one per part and the background, 19)
  stage t>1  two branches on [PAFs, confidence maps, F] of stage t-1: five
             7x7 convolutions (128), a 1x1 (128) and a 1x1 to the maps

Every convolution has a bias and a ReLU except each branch's last. Every
stage's maps are returned (all supervised), as one (B, H/8, W/8,
num_keypoints) tensor: the confidence maps, then the PAFs (OpenPose's own
channel order, in which the port's `mapIdx` counts PAF channels from 19);
posejax/codecs/affinity.py reads them.

`CMU_BODY` (`OPENPOSE_PRESETS['body_cmu']`, the defaults) has 52,311,446
parameters for its 19 + 38 output channels, as the port's state dict.
The input is what the CMU weights saw, BGR / 256 - 0.5
(`input_normalization='openpose'`); a network started from torchvision's
ImageNet VGG-19 (`posejax.pretrained`) takes `'imagenet'` instead.

The port's `no_relu_layers` names Mconv7_stage6_L1 twice and never
Mconv7_stage6_L2, so it applies a ReLU to the last stage's confidence maps;
the Caffe model does not, and neither does this network (tests compare the
port's output with the ReLU of this one's).

Parameter names are the port's: `model0/conv1_1/kernel` is
`model0.conv1_1.weight` of the module's state dict; `body_pose_model.pth`
itself holds the keys without the block (`conv1_1.weight`), which the
import accepts as well (`torch_file_key`).
"""

from __future__ import annotations

import re

import flax.linen as nn
import jax
import jax.numpy as jnp

from posejax.models import common

STRIDE = 8

OPENPOSE_PRESETS = {
    # The CMU COCO body model: 18 parts + background, 19 limbs.
    'body_cmu': dict(num_stages=6, num_limbs=19),
}

# VGG-19's convolutions in model0 by block, and where the max-pools sit.
_VGG_LAYERS = (('conv1_1', 'conv1_2'), ('conv2_1', 'conv2_2'),
               ('conv3_1', 'conv3_2', 'conv3_3', 'conv3_4'),
               ('conv4_1', 'conv4_2'))

# Hidden convolutions from scratch: He initialisation (ReLU, fan-in); each
# branch's last convolution: N(0, 0.01^2), as the CMU training prototxt.
_hidden_init = nn.initializers.variance_scaling(2.0, 'fan_in', 'normal')
_output_init = nn.initializers.normal(stddev=0.01)


def _conv(features: int, kernel_size: int, name: str, dtype, output=False):
  return common.conv(features, kernel_size, use_bias=True, dtype=dtype,
                     kernel_init=_output_init if output else _hidden_init,
                     name=name)


def _hidden(x, features: int, kernel_size: int, name: str, norm: bool, train: bool,
            dtype):
  """A hidden convolution (named as the port's layer) and its ReLU; with
  `norm`, BatchNorm between them (`{name}_bn`) and no bias: not in the CMU
  model, for short runs from scratch. Called inside a compact module."""
  if not norm:
    return common.relu(_conv(features, kernel_size, name, dtype)(x))
  x = common.conv(features, kernel_size, dtype=dtype, kernel_init=_hidden_init,
                  name=name)(x)
  return common.relu(common.batch_norm(train, dtype=dtype, name=f'{name}_bn')(x))


class Trunk(nn.Module):
  """model0: VGG-19's conv1_1 to conv4_2 and the two CPM convolutions."""

  vgg_widths: tuple[int, int, int, int] = (64, 128, 256, 512)
  cpm_widths: tuple[int, int] = (256, 128)
  pools: int = 3  # after the first `pools` blocks
  norm: bool = False
  dtype: common.Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    for block, (names, width) in enumerate(zip(_VGG_LAYERS, self.vgg_widths)):
      for name in names:
        x = _hidden(x, width, 3, name, self.norm, train, self.dtype)
      if block < self.pools:
        x = common.max_pool(x, (2, 2), strides=(2, 2))
    for i, width in enumerate(self.cpm_widths):
      x = _hidden(x, width, 3, f'conv4_{i + 3}_CPM', self.norm, train, self.dtype)
    return x


class Branch(nn.Module):
  """One branch of one stage (`model{stage}_{branch}` of the port)."""

  stage: int
  branch: int  # 1: part affinity fields, 2: confidence maps
  out_channels: int
  features: int = 128
  stage1_hidden: int = 512
  kernel_size: int = 7
  norm: bool = False
  dtype: common.Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    t, b = self.stage, self.branch
    if t == 1:
      layers = [(f'conv5_{i}_CPM_L{b}', self.features, 3) for i in (1, 2, 3)]
      layers += [(f'conv5_4_CPM_L{b}', self.stage1_hidden, 1),
                 (f'conv5_5_CPM_L{b}', self.out_channels, 1)]
    else:
      layers = [(f'Mconv{i}_stage{t}_L{b}', self.features, self.kernel_size)
                for i in range(1, 6)]
      layers += [(f'Mconv6_stage{t}_L{b}', self.features, 1),
                 (f'Mconv7_stage{t}_L{b}', self.out_channels, 1)]
    for name, features, kernel in layers[:-1]:
      x = _hidden(x, features, kernel, name, self.norm, train, self.dtype)
    name, features, kernel = layers[-1]
    return _conv(features, kernel, name, self.dtype, output=True)(x)


class OpenPose(nn.Module):
  """The two-branch multi-stage network; defaults are the CMU body model.

  Attributes:
    num_keypoints: output channels of every stage: the confidence maps
      (parts and background) then 2 * `num_limbs` PAF channels (57 for the
      COCO body model).
    num_limbs: limbs of the part affinity fields.
    num_stages: stages, each supervised (6 in the CMU model).
    vgg_widths: widths of VGG-19's four blocks in the trunk.
    cpm_widths: widths of conv4_3_CPM and conv4_4_CPM (the features F).
    stage_features: width of every stage's hidden convolutions.
    stage1_hidden: width of stage 1's 1x1 convolution.
    kernel_size: the later stages' kernel (7).
    stride: 8 (the CMU model: a max-pool after each of VGG's first three
      blocks) or 4 (none after the third; for small inputs).
    batch_norm: BatchNorm after every hidden convolution (which then has no
      bias); not in the CMU model, whose layout then no longer imports.
    input_normalization: 'openpose' (BGR / 256 - 0.5, the CMU weights') or
      'imagenet' (torchvision's VGG-19); see `common.normalize_images`.
    dtype: computation dtype.
  """

  num_keypoints: int
  num_limbs: int = 19
  num_stages: int = 6
  vgg_widths: tuple[int, int, int, int] = (64, 128, 256, 512)
  cpm_widths: tuple[int, int] = (256, 128)
  stage_features: int = 128
  stage1_hidden: int = 512
  kernel_size: int = 7
  stride: int = STRIDE
  batch_norm: bool = False
  input_normalization: str = 'openpose'
  dtype: common.Dtype = jnp.float32

  def __post_init__(self):
    if self.stride not in (4, 8):
      raise ValueError(f'OpenPose.stride must be 4 or 8, got {self.stride}.')
    common.require_positive(self, ('num_limbs', 'num_stages', 'stage_features',
                                   'stage1_hidden', 'kernel_size'))
    if self.num_keypoints <= 2 * self.num_limbs:
      raise ValueError(
          f'OpenPose outputs confidence maps and 2 x {self.num_limbs} PAF '
          f'channels per stage, so num_keypoints={self.num_keypoints} leaves no '
          'confidence maps: set model.num_limbs to the codec\'s limbs.')
    if len(self.vgg_widths) != 4 or len(self.cpm_widths) != 2:
      raise ValueError('OpenPose.vgg_widths takes 4 widths and cpm_widths 2, got '
                       f'{self.vgg_widths} and {self.cpm_widths}.')
    if self.input_normalization not in common.NORMALIZATIONS:
      raise ValueError(f'model.input_normalization must be one of '
                       f'{common.NORMALIZATIONS}, got {self.input_normalization!r}.')
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> list[jax.Array]:
    """Every stage's (N, H/s, W/s, num_keypoints) maps (s = `stride`), float32."""
    features = Trunk(tuple(self.vgg_widths), tuple(self.cpm_widths),
                     pools=3 if self.stride == 8 else 2, norm=self.batch_norm,
                     dtype=self.dtype, name='model0')(x, train)
    pafs = 2 * self.num_limbs
    maps = self.num_keypoints - pafs
    outputs, stage_input = [], features
    for t in range(1, self.num_stages + 1):
      branch = lambda b, out: Branch(  # pylint: disable=cell-var-from-loop
          t, b, out, self.stage_features, self.stage1_hidden, self.kernel_size,
          self.batch_norm, dtype=self.dtype, name=f'model{t}_{b}')(stage_input, train)
      paf, confidence = branch(1, pafs), branch(2, maps)
      outputs.append(jnp.concatenate([confidence, paf], -1).astype(jnp.float32))
      # The port's order: PAFs, confidence maps, features.
      stage_input = jnp.concatenate([paf, confidence, features], -1)
    return outputs


def torch_state_dict_key(path) -> str:
  """The port's module state-dict key: ('model0', 'conv1_1', 'kernel') ->
  'model0.conv1_1.weight'."""
  # The port's names keep their underscores (conv1_1 is no list index).
  return '.'.join([*path[:-1], common.TORCH_LEAF_NAMES[path[-1]]])


# torchvision's vgg19 `features` index of each of the trunk's VGG layers.
TORCHVISION_VGG19 = {0: 'conv1_1', 2: 'conv1_2', 5: 'conv2_1', 7: 'conv2_2',
                     10: 'conv3_1', 12: 'conv3_2', 14: 'conv3_3', 16: 'conv3_4',
                     19: 'conv4_1', 21: 'conv4_2'}
_TORCHVISION_KEY = re.compile(r'features\.(\d+)\.(weight|bias)$')
_FILE_KEY = re.compile(r'(?:conv(\d)_\d(?:_CPM)?(?:_L(\d))?|Mconv\d_stage(\d)_L(\d))\.')


def torch_file_key(key: str) -> str:
  """A key of `body_pose_model.pth` (the layer alone, 'conv5_1_CPM_L2.weight')
  as the module's ('model1_2.conv5_1_CPM_L2.weight'), and torchvision's
  vgg19 keys of the trunk's layers ('features.0.weight' ->
  'model0.conv1_1.weight'); other keys unchanged."""
  m = _TORCHVISION_KEY.match(key)
  if m is not None:
    layer = TORCHVISION_VGG19.get(int(m.group(1)))
    return key if layer is None else f'model0.{layer}.{m.group(2)}'
  m = _FILE_KEY.match(key)
  if m is None:
    return key
  block, stage1_branch, stage, branch = m.groups()
  if stage is not None:
    return f'model{stage}_{branch}.{key}'
  if stage1_branch is not None and block == '5':
    return f'model1_{stage1_branch}.{key}'
  return f'model0.{key}'
