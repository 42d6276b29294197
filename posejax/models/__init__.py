"""Pose networks: `config.model.name` -> Linen module class.

Every network takes NHWC float images (see `common.model_inputs`) and
returns a list of float32 heatmap tensors, one per supervised stage.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import flax.linen as nn
import jax.numpy as jnp

from posejax.models.common import normalize_images
from posejax.models.cpm import CPM
from posejax.models.cpm import CPM_PRESETS
from posejax.models.hourglass import HOURGLASS_PRESETS
from posejax.models.hourglass import StackedHourglass
from posejax.models.hrnet import HRNET_PRESETS
from posejax.models.hrnet import HRNet
from posejax.models.simple_baseline import SIMPLE_BASELINE_PRESETS
from posejax.models.simple_baseline import SimpleBaseline

MODELS: dict[str, type[nn.Module]] = {
    'hrnet': HRNet,
    'simple_baseline': SimpleBaseline,
    'hourglass': StackedHourglass,
    'cpm': CPM,
}

# Named bundles of constructor fields, applied before the config's own fields.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    'hrnet': HRNET_PRESETS,
    'simple_baseline': SIMPLE_BASELINE_PRESETS,
    'hourglass': HOURGLASS_PRESETS,
    'cpm': CPM_PRESETS,
}

DTYPES = {
    'float32': jnp.float32,
    'bfloat16': jnp.bfloat16,
}

# Config keys that build_model consumes itself rather than passing through.
_RESERVED = ('name', 'dtype', 'preset')


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
    model_config: ConfigDict or dict with `name` (a key of `MODELS`), `dtype`
      ('float32' or 'bfloat16', default 'float32'), optional `preset` (a key
      of `PRESETS[name]`, applied first) and any constructor fields of the
      model class (see `model_fields`), which override the preset.
    num_keypoints: heatmap channels, from the dataset's `KeypointSpec`.

  Returns:
    An unbound Linen module.

  Raises:
    ValueError: unknown name, preset, dtype or field; raised before anything
      is traced or compiled.
  """
  config = _as_dict(model_config)
  name = config.get('name')
  if name not in MODELS:
    raise ValueError(
        f'Unknown model name {name!r} in config.model.name; known models: '
        f'{sorted(MODELS)}.')
  model_cls = MODELS[name]
  valid = model_fields(model_cls)

  kwargs: dict[str, Any] = {}
  preset = config.get('preset')
  if preset is not None:
    presets = PRESETS.get(name, {})
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
    'CPM', 'CPM_PRESETS', 'DTYPES', 'HOURGLASS_PRESETS', 'HRNET_PRESETS',
    'HRNet', 'MODELS',
    'PRESETS', 'SIMPLE_BASELINE_PRESETS', 'SimpleBaseline',
    'StackedHourglass', 'build_model', 'model_fields', 'normalize_images',
]
