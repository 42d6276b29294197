"""Official pose checkpoints -> posejax variables and a step-0 run directory.

Reads the layouts of `layouts.LAYOUTS`. Every state-dict entry is either
consumed or explicitly ignored (`num_batches_tracked`, and parameters the
original code creates but never uses); a missing, mis-shaped or unexpected
key stops the conversion with its name.

The mapping itself (`variables_from_state_dict`) takes plain numpy arrays
and needs no torch; only reading a `.pth` file does.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from flax import traverse_util
import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from posejax import codecs
from posejax import experiment
from posejax import models
from posejax import sharding
from posejax import train_step
from posejax.checkpoints import layouts
from posejax.checkpoints import torch_files

# Families whose official code renders its targets on the official heatmap
# grid (`codecs`, grid='official'): deep-high-resolution-net.pytorch and
# human-pose-estimation.pytorch.
OFFICIAL_GRID_MODELS = ('hrnet', 'simple_baseline')


def _is_ignored(key: str, unused: frozenset[str]) -> bool:
  return key.endswith('num_batches_tracked') or key in unused


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
  if model_name not in layouts.LAYOUTS:
    raise ValueError(
        f'No PyTorch layout for model {model_name!r}; importable: '
        f'{sorted(layouts.LAYOUTS)}.')
  layout = layouts.LAYOUTS[model_name]
  matched = layout.match(state_dict, model, input_size)
  used = set(matched.keys.values())
  unused = layout.unused(model)
  unexpected = sorted(k for k in matched.state_dict
                      if k not in used and not _is_ignored(k, unused))
  errors = torch_files.key_problems(matched.missing, matched.misshaped,
                                    unexpected)
  if errors:
    raise ValueError(
        f'The state dict does not fit {model_name} as configured '
        f'(config.model): ' + '; '.join(errors) + '.')
  return traverse_util.unflatten_dict(matched.converted)


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
  if not os.path.isfile(os.path.expanduser(checkpoint)):
    raise FileNotFoundError(
        f'--checkpoint: no file at {checkpoint}; give the path of the official '
        '.pth file (the recipe docstring names where each is published).')
  checkpoint = os.path.expanduser(checkpoint)
  # The dataset's keypoint layout, from its builder; TensorFlow only here, so
  # that the mapping above and the checkpoint writing import without it.
  from posejax import data  # pylint: disable=g-import-not-at-top
  spec = data.keypoint_spec(data.get_builder(config.dataset, prepare=False))
  codec = codecs.codec_from_config(config, spec.num_keypoints)
  model = models.build_model(config.model,
                             codec.output_channels(spec.num_keypoints))
  state_dict = torch_files.load_torch_state_dict(checkpoint)
  variables = variables_from_state_dict(
      state_dict, config.model.name, model, tuple(config.input.size))
  return str(write_checkpoint(config, variables, workdir))
