r"""ImageNet-pretrained backbones: a classification checkpoint into a pose network.

The published HRNet, SimpleBaselines and HRNetV2 face recipes start from an
ImageNet classification network (`MODEL.PRETRAINED` of the official
configs). With `config.model.pretrained` set to such a checkpoint, a run that
starts with no checkpoint in its workdir loads the backbone from it before
step 1 (`train.train_and_evaluate`):

  hrnet            HRNet-Image-Classification `cls_hrnet` state dicts
                   (hrnet_w18/w32/w48 ..., hrnetv2_w18_imagenet_pretrained.pth)
  simple_baseline  torchvision ResNet-50/101/152 state dicts
                   (resnet50-19c8e357.pth, ...)
  asymmetric_hourglass  torchvision ResNet-50 (conv1 to layer3 of its encoder)

Every tensor of the file is either loaded or named as ignored (the
classification head, and for HRNet the fusions of the last stage that a pose
network with one output branch lacks); the pose head keeps its
initialisation. A file that does not fit (another architecture or width, a
truncated file, a pose checkpoint) stops the run before anything is
compiled, naming the keys. Files are `.pth`/`.pt` (read with torch), or
`.npz`/`.safetensors` with the same keys, which need no torch
(`convert_checkpoint`, `python -m posejax.pretrained`). The layouts are
`layouts.BACKBONES`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from typing import Any, Mapping

from absl import logging
from flax import traverse_util
import numpy as np

from posejax.checkpoints import layouts
from posejax.checkpoints import torch_files


def read_state_dict(path: str, model_name: str = '') -> dict[str, np.ndarray]:
  """key -> numpy array of a `.pth`/`.pt`, `.npz` or `.safetensors` file.

  Raises:
    FileNotFoundError: no such file; names where the weights are published.
    ValueError: the file cannot be read (truncated, not a state dict).
  """
  path = os.path.expanduser(path)
  if not os.path.isfile(path):
    backbone = layouts.BACKBONES.get(model_name)
    where = backbone.published if backbone else ''
    raise FileNotFoundError(
        f'model.pretrained: no ImageNet checkpoint at {path}. '
        + (f'Its weights are published by {where}; ' if where else '')
        + 'set --config.model.pretrained to the file (or the directory in the '
        "recipe's docstring), or train from scratch deliberately with "
        "--config.model.pretrained=''.")
  try:
    return torch_files.load_state_dict(path)
  except Exception as e:  # pylint: disable=broad-except
    # zipfile, pickle, torch and safetensors each raise their own types for a
    # truncated or foreign file; all mean the same to the user.
    raise ValueError(f'model.pretrained: cannot read {path} ({type(e).__name__}: '
                     f'{e}); is it a complete .pth, .npz or .safetensors '
                     'state dict?') from None


def convert_checkpoint(source: str, destination: str) -> int:
  """Rewrites `source` as a `.npz` or `.safetensors` file that needs no torch.

  Returns the number of tensors written.
  """
  state_dict = read_state_dict(source)
  torch_files.write_state_dict(state_dict, destination)
  return len(state_dict)


@dataclasses.dataclass
class Loaded:
  """What `backbone_variables` took from a checkpoint, for the log."""

  variables: dict  # {'params': ..., 'batch_stats': ...}, flat paths -> arrays
  loaded: list[str]  # checkpoint keys used
  ignored: list[str]  # checkpoint keys deliberately not used
  kept: list[str]  # pose-network keys left at their initialisation

  def summary(self, path: str, seconds: float) -> str:
    loaded_values = sum(int(np.prod(v.shape)) for v in self.variables.values())
    counters = [k for k in self.ignored if k.endswith('num_batches_tracked')]
    head = [k for k in self.ignored if k not in counters]
    return (f'Backbone from {path} in {seconds:.1f} s: loaded {len(self.loaded)} '
            f'tensors ({loaded_values:,} values); ignored {len(head)} '
            f'classification-only tensors ({_prefixes(head)}) and '
            f'{len(counters)} BatchNorm counters; kept the initialisation of '
            f'{len(self.kept)} pose-head tensors ({_prefixes(self.kept)}).')


def _prefixes(keys: list[str]) -> str:
  """'classifier.*, final_layer.*' for many keys: their first components."""
  return ', '.join(f'{k}.*' for k in sorted({k.split('.')[0] for k in keys})) or 'none'


def backbone_variables(state_dict: Mapping[str, Any], model_name: str, model,
                       input_size) -> Loaded:
  """The backbone variables of `model` from an ImageNet `state_dict`.

  Returns the converted values by flat Flax path (('params', ...) or
  ('batch_stats', ...)), and which keys were loaded, ignored and kept.

  Raises:
    ValueError: no ImageNet layout for the family; or naming every missing,
      mis-shaped or unexpected key, or the missing classifier.
  """
  if model_name not in layouts.BACKBONES:
    raise ValueError(
        f'model.pretrained: no ImageNet backbone layout for model {model_name!r}; '
        f'known: {sorted(layouts.BACKBONES)}. Set --config.model.pretrained=\'\'.')
  backbone = layouts.BACKBONES[model_name]
  matched = layouts.LAYOUTS[model_name].match(state_dict, model, input_size,
                                              keep=backbone.head)
  loaded = sorted(matched.keys[p] for p in matched.converted)
  backbone_keys = set(matched.keys.values()) - set(matched.kept)
  rest = [k for k in matched.state_dict if k not in backbone_keys]
  ignored = [k for k in rest if k.endswith('num_batches_tracked')
             or re.match(backbone.classification_only, k)]
  unexpected = sorted(set(rest) - set(ignored))
  errors = []
  if backbone.classifier_key not in matched.state_dict:
    errors.append(f'no {backbone.classifier_key}, so it is no ImageNet '
                  'classification checkpoint (a pose checkpoint goes through '
                  '`python -m posejax.import_torch` instead)')
  errors += torch_files.key_problems(matched.missing, matched.misshaped,
                                     unexpected)
  if errors:
    raise ValueError(
        f'model.pretrained: the checkpoint does not fit the {model_name} '
        'backbone as configured (config.model): ' + '; '.join(errors) + '.')
  return Loaded(matched.converted, loaded, sorted(ignored), sorted(matched.kept))


def load_backbone(path: str, model_name: str, model, input_size) -> Loaded:
  """Reads `path` and maps it onto `model`'s backbone; logs what it did."""
  start = time.perf_counter()
  loaded = backbone_variables(read_state_dict(path, model_name), model_name,
                              model, input_size)
  logging.info('%s', loaded.summary(path, time.perf_counter() - start))
  return loaded


def with_backbone(variables: dict, loaded: Loaded) -> dict:
  """`variables` (params, batch_stats) with the loaded backbone values."""
  flat = traverse_util.flatten_dict(variables)
  missing = set(loaded.variables) - set(flat)
  if missing:
    raise ValueError(f'Backbone paths not in the model: {sorted(missing)[:5]}')
  flat.update(loaded.variables)
  return traverse_util.unflatten_dict(flat)
