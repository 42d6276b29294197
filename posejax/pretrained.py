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
`.npz`/`.safetensors` with the same keys, which need no torch:

  python -m posejax.pretrained --input=hrnet_w32-36af842e.pth --output=hrnet_w32.npz
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from typing import Any, Mapping

from absl import app
from absl import flags
from absl import logging
from flax import traverse_util
import numpy as np

from posejax import import_torch
from posejax.models import summary


@dataclasses.dataclass(frozen=True)
class Backbone:
  """How a network family's backbone sits in its ImageNet checkpoint.

  The backbone's keys are those of the pose network's own official layout
  (`import_torch.LAYOUTS`), so the same key mapping serves both.
  """

  # Pose-network keys the classifier lacks: they keep their initialisation.
  head: str  # a regular expression matched at the start of a key
  # Keys only a classification checkpoint has; ignored when loading.
  classification_only: str
  # One of them, required: without it the file is no classification network.
  classifier_key: str
  # Where the published weights come from, for the missing-file message.
  published: str


BACKBONES: dict[str, Backbone] = {
    'hrnet': Backbone(
        head=r'(final_layer|head)\.',
        # The classification head, and the fusions into branches 1-3 of the
        # last module, which a pose HRNet (one output branch) does not have.
        classification_only=(r'(incre_modules|downsamp_modules|final_layer|'
                             r'classifier)\.|stage4\.\d+\.fuse_layers\.[1-9]'),
        classifier_key='classifier.weight',
        published=('HRNet-Image-Classification (hrnet_w18/w32/w48-*.pth, linked '
                   'from the README of github.com/leoxiaobin/deep-high-resolution-'
                   'net.pytorch; hrnetv2_w18_imagenet_pretrained.pth from '
                   'github.com/HRNet/HRNet-Facial-Landmark-Detection)')),
    'simple_baseline': Backbone(
        head=r'(deconv_layers|final_layer)\.',
        classification_only=r'fc\.',
        classifier_key='fc.weight',
        published=("torchvision's ImageNet ResNets (resnet50-19c8e357.pth, "
                   'resnet101-5d3b4d8f.pth, resnet152-b121ed2d.pth, from '
                   'download.pytorch.org/models/)')),
    'asymmetric_hourglass': Backbone(
        # The encoder's conv1..layer3 are ResNet-50's; its dilated layer4 is
        # narrower (layer4_planes) and keeps its initialisation, as do the
        # decoder and the stacks.
        head=r'(layer4|decoder_|stack\d|head|merge_)',
        classification_only=r'(fc|layer4)\.',
        classifier_key='fc.weight',
        published=("torchvision's ImageNet ResNet-50 (resnet50-19c8e357.pth, "
                   'from download.pytorch.org/models/)')),
}


def read_state_dict(path: str, model_name: str = '') -> dict[str, np.ndarray]:
  """key -> numpy array of a `.pth`/`.pt`, `.npz` or `.safetensors` file.

  Raises:
    FileNotFoundError: no such file; names where the weights are published.
    ValueError: the file cannot be read (truncated, not a state dict).
  """
  path = os.path.expanduser(path)
  if not os.path.isfile(path):
    where = BACKBONES[model_name].published if model_name in BACKBONES else ''
    raise FileNotFoundError(
        f'model.pretrained: no ImageNet checkpoint at {path}. '
        + (f'Its weights are published by {where}; ' if where else '')
        + 'set --config.model.pretrained to the file (or the directory in the '
        "recipe's docstring), or train from scratch deliberately with "
        "--config.model.pretrained=''.")
  try:
    if path.endswith('.npz'):
      with np.load(path, allow_pickle=False) as archive:
        return {k: archive[k] for k in archive.files}
    if path.endswith('.safetensors'):
      from safetensors import numpy as safetensors_numpy  # pylint: disable=g-import-not-at-top
      return dict(safetensors_numpy.load_file(path))
    return import_torch.load_torch_state_dict(path)
  except Exception as e:  # pylint: disable=broad-except
    # zipfile, pickle, torch and safetensors each raise their own types for a
    # truncated or foreign file; all mean the same to the user.
    raise ValueError(f'model.pretrained: cannot read {path} ({type(e).__name__}: '
                     f'{e}); is it a complete .pth, .npz or .safetensors '
                     'state dict?') from None


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
  if model_name not in BACKBONES:
    raise ValueError(
        f'model.pretrained: no ImageNet backbone layout for model {model_name!r}; '
        f'known: {sorted(BACKBONES)}. Set --config.model.pretrained=\'\'.')
  backbone = BACKBONES[model_name]
  layout = import_torch.LAYOUTS[model_name]
  flat = traverse_util.flatten_dict(summary.abstract_variables(model, input_size))
  keys = {path: layout.key(path[1:]) for path in flat}
  state_dict = import_torch.strip_prefix(state_dict, set(keys.values()))

  converted, kept, missing, misshaped = {}, [], [], []
  for path, leaf in flat.items():
    key = keys[path]
    if re.match(backbone.head, key):
      kept.append(key)
    elif key not in state_dict:
      missing.append(key)
    else:
      value = layout.to_flax(path[1:], np.asarray(state_dict[key]))
      if value.shape != leaf.shape:
        misshaped.append(f'{key} {tuple(value.shape)} != {tuple(leaf.shape)}')
      else:
        converted[path] = value.astype(leaf.dtype)
  loaded = sorted(keys[p] for p in converted)
  backbone_keys = {k for k in keys.values() if not re.match(backbone.head, k)}
  rest = [k for k in state_dict if k not in backbone_keys]
  ignored = [k for k in rest if k.endswith('num_batches_tracked')
             or re.match(backbone.classification_only, k)]
  unexpected = sorted(set(rest) - set(ignored))
  errors = []
  if backbone.classifier_key not in state_dict:
    errors.append(f'no {backbone.classifier_key}, so it is no ImageNet '
                  'classification checkpoint (a pose checkpoint goes through '
                  '`python -m posejax.import_torch` instead)')
  if missing:
    errors.append(import_torch.listing('missing keys', missing))
  if misshaped:
    errors.append(import_torch.listing('mis-shaped keys (converted != expected)',
                                       misshaped))
  if unexpected:
    errors.append(import_torch.listing('unexpected keys', unexpected))
  if errors:
    raise ValueError(
        f'model.pretrained: the checkpoint does not fit the {model_name} '
        'backbone as configured (config.model): ' + '; '.join(errors) + '.')
  return Loaded(converted, loaded, sorted(ignored), sorted(kept))


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


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  values = flags.FLAGS
  if not values.output.endswith(('.npz', '.safetensors')):
    raise SystemExit('posejax: --output must end in .npz or .safetensors.')
  try:
    state_dict = read_state_dict(values.input)
  except (FileNotFoundError, ValueError) as e:
    raise SystemExit(f'posejax: {e}') from None
  arrays = {k: np.ascontiguousarray(v) for k, v in state_dict.items()}
  if values.output.endswith('.npz'):
    np.savez(values.output, **arrays)
  else:
    from safetensors import numpy as safetensors_numpy  # pylint: disable=g-import-not-at-top
    safetensors_numpy.save_file(arrays, values.output)
  print(f'Wrote {len(arrays)} tensors to {values.output}.')


if __name__ == '__main__':
  # Flags only as a program: the training loop imports this module.
  flags.DEFINE_string('input', None, 'A .pth/.pt state dict (needs torch).')
  flags.DEFINE_string('output', None, 'The .npz or .safetensors file to write.')
  flags.mark_flags_as_required(['input', 'output'])
  app.run(main)
