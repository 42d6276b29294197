r"""Official PyTorch checkpoints -> a posejax run directory.

  pip install -e '.[torch]'
  python -m posejax.import_torch --config=configs/hrnet_coco.py:official \
      --checkpoint=pose_hrnet_w32_256x192.pth --workdir=runs/hrnet_w32_official

writes the converted weights as the step-0 Orbax checkpoint of `--workdir`
(with a fresh optimizer state for the config's optimizer). Then

  python -m posejax.eval --config=configs/hrnet_coco.py:official --workdir=runs/hrnet_w32_official

evaluates them, and `python -m posejax.main` with the same config and workdir
fine-tunes from them (it resumes from the latest checkpoint, step 0). The
`official` variant of the COCO recipes reads and renders heatmaps on the
official code's grid (`codecs`, grid='official') and shifts flipped maps as
its evaluation does; HRNet and SimpleBaselines checkpoints need it.

Supported layouts: the official deep-high-resolution-net.pytorch HRNet,
microsoft/human-pose-estimation.pytorch SimpleBaselines and
princeton-vl/pytorch_stacked_hourglass. Every state-dict entry is either
consumed or explicitly ignored (`num_batches_tracked`, and parameters the
original code creates but never uses); a missing, mis-shaped or unexpected
key stops the conversion with its name.

The mapping itself (`variables_from_state_dict`) takes plain numpy arrays
and needs no torch; only reading a `.pth` file does.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

from absl import app
from absl import flags
from flax import traverse_util
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np
import orbax.checkpoint as ocp

from posejax import config_lib
from posejax import experiment
from posejax import models
from posejax import sharding
from posejax import train_step
from posejax.models import common
from posejax.models import hourglass
from posejax.models import hrnet
from posejax.models import simple_baseline
from posejax.models import summary

# Families whose official code renders its targets on the official heatmap
# grid (`codecs`, grid='official'): deep-high-resolution-net.pytorch and
# human-pose-estimation.pytorch.
OFFICIAL_GRID_MODELS = ('hrnet', 'simple_baseline')

# Wrappers that prefix every key: nn.DataParallel ('module.') and the
# princeton-vl trainer ('model.module.').
_KEY_PREFIXES = ('', 'module.', 'model.module.', 'model.')


def _conv_kernel_to_flax(value: np.ndarray) -> np.ndarray:
  # nn.Conv2d weight (out, in, kh, kw) -> Flax (kh, kw, in, out).
  return value.transpose(2, 3, 1, 0) if value.ndim == 4 else value


def _simple_baseline_to_flax(path, value: np.ndarray) -> np.ndarray:
  axes = simple_baseline.torch_weight_axes(path)
  if axes is None:
    return value
  return value.transpose(np.argsort(axes))  # the inverse permutation


@dataclasses.dataclass(frozen=True)
class TorchLayout:
  """How one network family's variables sit in its official state dict.

  Attributes:
    key: Flax variable path (below the collection) -> state-dict key.
    to_flax: (path, torch value) -> Flax value (layout only, e.g. kernels).
    unused: model -> keys of parameters the original creates but never uses.
  """
  key: Callable[[Sequence[str]], str]
  to_flax: Callable[[Sequence[str], np.ndarray], np.ndarray] = (
      lambda path, value: _conv_kernel_to_flax(value))
  unused: Callable[[Any], frozenset[str]] = lambda model: frozenset()


LAYOUTS: dict[str, TorchLayout] = {
    'hrnet': TorchLayout(key=hrnet.torch_state_dict_key),
    'simple_baseline': TorchLayout(key=simple_baseline.torch_state_dict_key,
                                   to_flax=_simple_baseline_to_flax),
    'hourglass': TorchLayout(key=hourglass.torch_state_dict_key,
                             unused=hourglass.unused_torch_state_dict_keys),
    # No official checkpoint: the layout serves its ImageNet ResNet-50 encoder
    # (posejax/pretrained.py), named as torchvision's.
    'asymmetric_hourglass': TorchLayout(key=common.torch_state_dict_key),
}


def _is_ignored(key: str, unused: frozenset[str]) -> bool:
  return key.endswith('num_batches_tracked') or key in unused


def strip_prefix(state_dict: Mapping[str, Any], expected: set[str]):
  """Drops a wrapper prefix, choosing the one that matches the most keys."""
  def matches(prefix):
    return sum(k[len(prefix):] in expected for k in state_dict
               if k.startswith(prefix))
  best = max(_KEY_PREFIXES, key=matches)
  return {(k[len(best):] if k.startswith(best) else k): v
          for k, v in state_dict.items()}


def listing(title: str, items: list[str], limit: int = 10) -> str:
  shown = ', '.join(items[:limit])
  more = f' and {len(items) - limit} more' if len(items) > limit else ''
  return f'{len(items)} {title}: {shown}{more}'


def variables_from_state_dict(state_dict: Mapping[str, Any], model_name: str,
                              model, input_size) -> dict:
  """Maps an official state dict onto the model's `params` and `batch_stats`.

  Args:
    state_dict: key -> array (numpy or anything `np.asarray` takes).
    model_name: `config.model.name`, which selects the layout.
    model: the Linen module the weights are for.
    input_size: (height, width) the model is initialised at.

  Returns:
    {'params': ..., 'batch_stats': ...} of float32 numpy arrays.

  Raises:
    ValueError: naming every missing, mis-shaped or unexpected key.
  """
  if model_name not in LAYOUTS:
    raise ValueError(
        f'No PyTorch layout for model {model_name!r}; importable: '
        f'{sorted(LAYOUTS)}.')
  layout = LAYOUTS[model_name]
  flat = traverse_util.flatten_dict(
      summary.abstract_variables(model, input_size))
  keys = {path: layout.key(path[1:]) for path in flat}
  state_dict = strip_prefix(state_dict, set(keys.values()))

  converted, missing, misshaped = {}, [], []
  for path, leaf in flat.items():
    key = keys[path]
    if key not in state_dict:
      missing.append(key)
      continue
    value = layout.to_flax(path[1:], np.asarray(state_dict[key]))
    if value.shape != leaf.shape:
      misshaped.append(f'{key} {tuple(value.shape)} != {tuple(leaf.shape)}')
      continue
    converted[path] = value.astype(leaf.dtype)
  used = set(keys.values())
  unused = layout.unused(model)
  unexpected = sorted(k for k in state_dict
                      if k not in used and not _is_ignored(k, unused))
  errors = []
  if missing:
    errors.append(listing('missing keys', missing))
  if misshaped:
    errors.append(listing('mis-shaped keys (converted != expected)',
                           misshaped))
  if unexpected:
    errors.append(listing('unexpected keys', unexpected))
  if errors:
    raise ValueError(
        f'The state dict does not fit {model_name} as configured '
        f'(config.model): ' + '; '.join(errors) + '.')
  return traverse_util.unflatten_dict(converted)


def load_torch_state_dict(path: str) -> dict[str, np.ndarray]:
  """Reads a `.pth`/`.pt` file (a state dict, or a dict holding one)."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise SystemExit(
        "posejax: reading PyTorch checkpoints needs torch: "
        "pip install -e '.[torch]'") from None
  obj = torch.load(path, map_location='cpu', weights_only=True)
  if isinstance(obj, Mapping) and 'state_dict' in obj:
    obj = obj['state_dict']
  if not isinstance(obj, Mapping):
    raise ValueError(f'{path} holds a {type(obj).__name__}, not a state dict.')
  return {k: v.detach().float().numpy() if v.is_floating_point()
          else v.numpy() for k, v in obj.items()}


def write_checkpoint(config, variables: dict, workdir: str) -> str:
  """Saves `variables` as the step-0 train state of `workdir`."""
  manager = experiment.checkpoint_manager(workdir, config.train.keep_checkpoints)
  if manager.latest_step() is not None:
    raise FileExistsError(
        f'{workdir} already holds checkpoints (steps {list(manager.all_steps())});'
        ' import into an empty --workdir.')
  tx, _ = train_step.make_optimizer(config.optim, config.train.num_steps)
  mesh = sharding.make_mesh(config.mesh)
  params = jax.tree.map(jnp.asarray, variables['params'])
  state = train_step.TrainState(
      step=jnp.zeros((), jnp.int32), params=params,
      batch_stats=jax.tree.map(jnp.asarray, variables.get('batch_stats', {})),
      opt_state=tx.init(params))
  state = jax.device_put(state, sharding.replicated(mesh))
  manager.save(0, args=ocp.args.StandardSave(state))
  manager.wait_until_finished()
  return manager.directory


def import_checkpoint(config, checkpoint: str, workdir: str) -> str:
  """Converts `checkpoint` for `config` into `workdir`; returns its path."""
  # The dataset's keypoint layout, from its builder; TensorFlow only here, so
  # that the mapping above and the checkpoint writing import without it.
  from posejax import data  # pylint: disable=g-import-not-at-top
  spec = data.keypoint_spec(data.get_builder(config.dataset, prepare=False))
  model = models.build_model(config.model, spec.num_keypoints)
  state_dict = load_torch_state_dict(checkpoint)
  variables = variables_from_state_dict(
      state_dict, config.model.name, model, tuple(config.input.size))
  return str(write_checkpoint(config, variables, workdir))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  values = flags.FLAGS
  try:
    path = import_checkpoint(values.config, values.checkpoint, values.workdir)
  except (ValueError, FileExistsError, FileNotFoundError) as e:
    raise SystemExit(f'posejax: {e}') from None
  print(f'Wrote the step-0 checkpoint to {path}.')
  config = values.config
  if (config.model.name in OFFICIAL_GRID_MODELS
      and config.codec.get('grid', 'centred') != 'official'):
    print('Note: networks trained by the official code put heatmap pixel j on '
          'input pixel 4j (posejax: 4j + 1.5) and the box centre on input '
          'pixel W/2 (posejax: (W-1)/2). Evaluate and fine-tune them with '
          "the recipes' `official` variant (e.g. "
          '--config=configs/hrnet_coco.py:official; '
          'posejax.config_lib.official_inference lists its fields); '
          'otherwise every keypoint lands about 2 input pixels off.')


if __name__ == '__main__':
  # Flags only as a program: tests and notebooks import the functions.
  config_flags.DEFINE_config_file('config', None, 'Experiment config file.')
  flags.DEFINE_string('checkpoint', None, 'Official PyTorch .pth/.pt file.')
  flags.DEFINE_string('workdir', None, 'New run directory to write.')
  flags.mark_flags_as_required(['config', 'checkpoint', 'workdir'])
  app.run(main, flags_parser=config_lib.parse_flags)
