"""Pose networks: `config.model.name` -> the network's entry in `NETWORKS`.

Every network takes NHWC float images (see `common.model_inputs`) and
returns a list of float32 output tensors, one per supervised stage, with the
codec's channels per keypoint (heatmaps, or disks and offsets;
posejax/codecs/).

Adding a network: its module (a Linen class with a `num_keypoints` field and
a `dtype`, returning the list above) and one `NETWORKS` entry; `build_model`,
the summary, the benchmark and every recipe's `smoke` variant read it from
there. To import its PyTorch checkpoints, add its layout to `LAYOUTS` of
posejax/checkpoints/layouts.py (and to `BACKBONES` there to start it from an
ImageNet network).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import flax.linen as nn
import jax.numpy as jnp

from posejax.models.asymmetric_hourglass import ASYMMETRIC_HOURGLASS_PRESETS
from posejax.models.asymmetric_hourglass import AsymmetricHourglass
from posejax.models.common import normalize_images
from posejax.models.cpm import CPM
from posejax.models.cpm import CPM_PRESETS
from posejax.models.cpn import CPN
from posejax.models.cpn import CPN_PRESETS
from posejax.models.hourglass import HOURGLASS_PRESETS
from posejax.models.hourglass import StackedHourglass
from posejax.models.mspn import MSPN
from posejax.models.mspn import MSPN_PRESETS
from posejax.models.openpose import OPENPOSE_PRESETS
from posejax.models.openpose import OpenPose
from posejax.models.pose_ae_hourglass import POSE_AE_HOURGLASS_PRESETS
from posejax.models.pose_ae_hourglass import PoseAEHourglass
from posejax.models.hrnet import HRNET_PRESETS
from posejax.models.hrnet import HRNet
from posejax.models.simple_baseline import SIMPLE_BASELINE_PRESETS
from posejax.models.simple_baseline import SimpleBaseline

# ((height, width), keypoints).
InputSpec = tuple[tuple[int, int], int]


@dataclasses.dataclass(frozen=True)
class Network:
  """What posejax needs to know about one network family."""

  module: type[nn.Module]
  # Named bundles of constructor fields (`config.model.preset`), applied
  # before the config's own fields.
  presets: Mapping[str, Mapping[str, Any]]
  # The input and keypoints it is usually trained with: the default of
  # `posejax.models.summary` and `posejax.benchmark`.
  usual_input: InputSpec
  # Constructor fields that keep its structure (stages, heads, strides) at a
  # few channels: the recipes' `smoke` variant (config_lib.smoke).
  smoke: Mapping[str, Any]
  # Presets usually trained at another input than `usual_input`.
  preset_inputs: Mapping[str, InputSpec] = dataclasses.field(
      default_factory=dict)

  def usual(self, preset: str | None = None) -> InputSpec:
    """The usual input of the network with `preset`."""
    return self.preset_inputs.get(preset, self.usual_input)


NETWORKS: dict[str, Network] = {
    'hrnet': Network(
        HRNet, HRNET_PRESETS, usual_input=((256, 192), 17),
        preset_inputs={'v2_w18': ((256, 256), 98),  # WFLW faces
                       # Bottom-up COCO: 17 heatmaps and 17 tags.
                       'higher_w32': ((512, 512), 34),
                       'higher_w48': ((640, 640), 34)},
        # deconv_blocks: HigherHRNet's head (head='higher'); unread by the others.
        smoke=dict(stem_width=8, stage1_blocks=1, widths=(8, 16),
                   num_modules=(1,), num_blocks=1, deconv_blocks=1)),
    'simple_baseline': Network(
        SimpleBaseline, SIMPLE_BASELINE_PRESETS, usual_input=((256, 192), 17),
        smoke=dict(width=4, deconv_features=(8, 8, 8))),
    # Multi-stage top-down: GlobalNet's four levels, then RefineNet (5 outputs).
    'cpn': Network(
        CPN, CPN_PRESETS, usual_input=((256, 192), 17),
        smoke=dict(width=8, pyramid_features=8, refine_planes=4)),
    # Four outputs per stage, each stage's from the coarsest decoder unit.
    'mspn': Network(
        MSPN, MSPN_PRESETS, usual_input=((256, 192), 17),
        smoke=dict(width=8, decoder_features=8)),
    'hourglass': Network(
        StackedHourglass, HOURGLASS_PRESETS,
        usual_input=((256, 256), 16),  # MPII
        smoke=dict(num_stacks=1, features=8, depth=1)),
    # Bottom-up (associative embedding): K heatmaps and K tags per stack.
    'ae_hourglass': Network(
        PoseAEHourglass, POSE_AE_HOURGLASS_PRESETS,
        usual_input=((512, 512), 34),
        smoke=dict(num_stacks=2, features=8, increase=4, depth=2)),
    # Bottom-up (part affinity fields): per stage, the confidence maps of the
    # parts and the background, then 2 channels per limb (COCO-18: 19 + 38).
    'openpose': Network(
        OpenPose, OPENPOSE_PRESETS, usual_input=((368, 368), 57),
        smoke=dict(num_stages=2, vgg_widths=(8, 8, 8, 8), cpm_widths=(8, 8),
                   stage_features=8, stage1_hidden=8, kernel_size=3)),
    'cpm': Network(
        CPM, CPM_PRESETS, usual_input=((256, 192), 17),
        smoke=dict(num_stages=2, feat_channels=8, middle_channels=8,
                   stem_channels=8, stem_hidden_channels=16)),
    'asymmetric_hourglass': Network(
        AsymmetricHourglass, ASYMMETRIC_HOURGLASS_PRESETS,
        # FashionAI: 24 keypoints, each a disk and two offsets (3 channels).
        usual_input=((256, 256), 72),
        smoke=dict(num_stacks=2, width=4, layer4_planes=4, features=8)),
}

DTYPES = {
    'float32': jnp.float32,
    'bfloat16': jnp.bfloat16,
}

# Config keys that are no constructor fields: build_model's own, and the
# backbone checkpoint a run starts from (posejax/checkpoints/imagenet.py).
_RESERVED = ('name', 'dtype', 'preset', 'pretrained')


def model_fields(model_cls: type[nn.Module]) -> tuple[str, ...]:
  """Constructor fields a config may set (num_keypoints comes from the data)."""
  return tuple(
      f.name for f in dataclasses.fields(model_cls)
      if f.init and f.name not in ('parent', 'name', 'num_keypoints'))


def _as_dict(config: Any) -> dict[str, Any]:
  if hasattr(config, 'to_dict'):  # ml_collections.ConfigDict
    return dict(config.to_dict())
  if isinstance(config, Mapping):
    return dict(config)
  raise TypeError(
      f'model config must be a ConfigDict or a dict, got {type(config)}.')


def _freeze(value: Any) -> Any:
  # Linen modules are hashable dataclasses: lists from configs become tuples.
  if isinstance(value, (list, tuple)):
    return tuple(_freeze(v) for v in value)
  return value


def build_model(model_config: Any, num_keypoints: int) -> nn.Module:
  """Builds the network described by `config.model`.

  Args:
    model_config: ConfigDict or dict with `name` (a key of `NETWORKS`),
      `dtype` ('float32' or 'bfloat16', default 'float32'), optional `preset`
      (a key of `NETWORKS[name].presets`, applied first) and any constructor
      fields of the model class (see `model_fields`), which override the
      preset.
    num_keypoints: output channels: the dataset's keypoints (`KeypointSpec`)
      times the codec's channels per keypoint.

  Returns:
    An unbound Linen module.

  Raises:
    ValueError: unknown name, preset, dtype or field; raised before anything
      is traced or compiled.
  """
  config = _as_dict(model_config)
  name = config.get('name')
  if name not in NETWORKS:
    raise ValueError(
        f'Unknown model name {name!r} in config.model.name; known models: '
        f'{sorted(NETWORKS)}.')
  network = NETWORKS[name]
  model_cls = network.module
  valid = model_fields(model_cls)

  kwargs: dict[str, Any] = {}
  preset = config.get('preset')
  if preset is not None:
    presets = network.presets
    if preset not in presets:
      raise ValueError(
          f'Unknown preset {preset!r} for model {name!r} in '
          f'config.model.preset; known presets: {sorted(presets)}.')
    kwargs.update(presets[preset])

  dtype_name = config.get('dtype', 'float32')
  if dtype_name not in DTYPES:
    raise ValueError(
        f'Unknown config.model.dtype {dtype_name!r}; choose one of '
        f'{sorted(DTYPES)}.')

  for key, value in config.items():
    if key in _RESERVED:
      continue
    if key not in valid:
      raise ValueError(
          f'Unknown field config.model.{key} for model {name!r} '
          f'({model_cls.__name__}); valid fields: '
          f'{sorted(set(valid) | set(_RESERVED))}.'
          + (' num_keypoints comes from the dataset.'
             if key == 'num_keypoints' else ''))
    kwargs[key] = _freeze(value)

  return model_cls(num_keypoints=num_keypoints, dtype=DTYPES[dtype_name],
                   **kwargs)


__all__ = [
    'AsymmetricHourglass', 'CPM', 'CPN', 'DTYPES', 'MSPN', 'HRNet', 'NETWORKS', 'Network',
    'OpenPose',
    'PoseAEHourglass', 'SimpleBaseline',
    'StackedHourglass', 'build_model', 'model_fields', 'normalize_images',
]
