"""What a run derives from its config, and where a run keeps its state.

`Setup(config)` checks the config and builds everything a run needs before
anything is compiled: the dataset's builder (records built on first use), its
keypoint layout, the codec, the network, the mesh and the metric. Problems
come out as one `SetupError` naming the field or file and the fix, in the
order a newcomer meets them: the config's own values first, then everything
missing on disk at once (the dataset, a detection-boxes file).

A run directory (`workdir`) holds:
  checkpoints/<step>/       Orbax checkpoints of the train state, the last few
  best_checkpoint/<step>/   with train.early_stopping: the lowest validation loss
  eval/step_<N>/            metrics.json, results.json, predictions.png
  events.out.tfevents.*     TensorBoard scalars
Training (`train.py`) and evaluation (`evaluation/evaluator.py`, `eval.py`)
both read it
through the functions here.
"""

from __future__ import annotations

import os

from absl import logging
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np
from jax.experimental import multihost_utils
import orbax.checkpoint as ocp

from posejax import codecs
from posejax import config_lib
from posejax import evaluation
from posejax import losses
from posejax import models
from posejax import sharding
from posejax import train_step
from posejax.evaluation import detections

CHECKPOINT_DIR = 'checkpoints'
# Where early stopping keeps the state of the lowest validation loss.
BEST_CHECKPOINT_DIR = 'best_checkpoint'


class SetupError(ValueError):
  """The config or the data cannot run; the message names the fix."""


class Setup:
  """Everything a run derives from its config, built before any compilation.

  Attributes: config, builder (prepared TFDS builder), spec (KeypointSpec),
  codec, loss (losses.Loss), model (unbound Linen module), mesh and metric
  (an evaluation.METRICS key).
  """

  def __init__(self, config):
    try:
      self._build(config)
    except (ValueError, FileNotFoundError, AssertionError) as e:
      raise SetupError(str(e)) from e

  def _build(self, config):
    # TensorFlow (the data) only once a run is set up: the checkpoint
    # functions below serve checkpoint import and notebooks without it.
    from posejax import data  # pylint: disable=g-import-not-at-top
    config_lib.validate(config)
    self.config = config
    self.loss = losses.loss_from_config(config.loss)
    self.mesh = sharding.make_mesh(config.mesh)
    sharding.check_batch_size(config.train.global_batch_size, self.mesh,
                              'train.global_batch_size')
    sharding.check_batch_size(config.eval.batch_size, self.mesh, 'eval.batch_size')
    self.builder = data.get_builder(config.dataset, prepare=False)
    self.spec = data.keypoint_spec(self.builder)
    self.codec = codecs.codec_from_config(config, self.spec.num_keypoints)
    if self.codec.bottom_up and config.train.early_stopping.every_steps:
      raise ValueError(
          'train.early_stopping measures a top-down validation loss; bottom-up '
          'codecs (codec.name='
          f'{config.codec.name!r}) train for train.num_steps: set '
          '--config.train.early_stopping.every_steps=0.')
    if self.codec.bottom_up and detections.detection_file(config):
      raise ValueError(
          f'eval.boxes = {config.eval.boxes!r}: bottom-up networks need no '
          "boxes (they find every person in the image); leave eval.boxes at "
          "'ground_truth'.")
    # K output channels per keypoint and stage (3 for offset voting).
    self.model = models.build_model(config.model,
                                    self.codec.output_channels(self.spec.num_keypoints))
    self.metric = metric_name(config, type(self.builder))
    # Everything missing on disk, in one message.
    missing = [data.missing_data(self.builder, config.dataset)]
    boxes = detections.detection_file(config)
    if boxes and not os.path.isfile(boxes):
      missing.append(detections.missing_file_message(boxes))
    missing = [m for m in missing if m]
    if missing:
      raise FileNotFoundError('\n\n'.join(missing))
    # With several processes, process 0 builds missing records first (the
    # others would race it on a shared file system), then the rest.
    if jax.process_index() > 0:
      multihost_utils.sync_global_devices('posejax: records')
    data.prepare_records(self.builder, config.dataset)
    if jax.process_count() > 1 and jax.process_index() == 0:
      multihost_utils.sync_global_devices('posejax: records')


  def build_training(self, start=None) -> train_step.Training:
    """This run's optimiser, initial state and jitted step
    (`train_step.build_training`; `start` as there)."""
    c = self.config
    return train_step.build_training(
        self.model, self.codec, self.loss, self.mesh, c.optim,
        num_steps=c.train.num_steps, input_size=c.input.size, seed=c.seed,
        start=start)


def metric_name(config, builder_cls) -> str:
  """The metric `config` evaluates with: eval.metric, else the dataset's.

  Raises:
    ValueError: an unknown metric, or detection boxes with a metric other
      than 'coco'.
  """
  name = config.eval.metric or builder_cls.METRIC
  if name not in evaluation.METRICS:
    raise ValueError(
        f'Unknown eval.metric {name!r} (dataset {config.dataset.name!r}); '
        f'known: {sorted(evaluation.METRICS)}. Set --config.eval.metric.')
  if detections.detection_file(config) is not None and name != 'coco':
    raise ValueError(
        f"eval.boxes is a detection file, which only the 'coco' metric can "
        f"score (against every annotation); the {name!r} metric needs "
        "eval.boxes='ground_truth'.")
  return name


# ------------------------------------------------------------ checkpoints

def checkpoint_manager(workdir: str, keep: int) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR),
      options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))


def best_checkpoint_manager(workdir: str) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), BEST_CHECKPOINT_DIR),
      options=ocp.CheckpointManagerOptions(
          max_to_keep=1, create=True, best_mode='min',
          best_fn=lambda metrics: metrics['validation_loss']))


def restore_latest(manager: ocp.CheckpointManager, state):
  """`state` restored from the latest checkpoint, or as it is if there is none."""
  step = manager.latest_step()
  if step is None:
    return state
  logging.info('Resuming from the checkpoint of step %d.', step)
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
  return manager.restore(step, args=ocp.args.StandardRestore(abstract))


def load_variables(workdir: str, step: int | None = None, best: bool = False):
  """params and batch_stats of a checkpoint (latest if `step` is None).

  With `best`, from the state early stopping kept (the lowest validation
  loss, BEST_CHECKPOINT_DIR) instead of the regular checkpoints.

  Raises:
    FileNotFoundError: no such checkpoint; names the steps there are.
  """
  directory = os.path.join(os.path.abspath(workdir),
                           BEST_CHECKPOINT_DIR if best else CHECKPOINT_DIR)
  # Orbax would create a missing directory; a wrong --workdir should not.
  manager = (ocp.CheckpointManager(
      directory, item_handlers=ocp.StandardCheckpointHandler())
             if os.path.isdir(directory) else None)
  found = list(manager.all_steps()) if manager else []
  step = (manager.latest_step() if manager else None) if step is None else step
  if step is None or step not in found:
    raise FileNotFoundError(
        f'No checkpoint {"" if step is None else f"for step {step} "}in '
        f'{directory} (found steps {found}). '
        + ('Only runs with train.early_stopping keep a best checkpoint.' if best
           else 'Train first with `python -m posejax.main --config=... '
           '--workdir=...`.'))
  # Restored replicated on this run's devices, whatever devices (and how
  # many processes) saved it: a run trained on a GPU node evaluates on a
  # laptop, and the other way round.
  everywhere = NamedSharding(Mesh(np.asarray(jax.devices()), ('data',)), P())
  abstract = jax.tree.map(
      lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=everywhere),
      manager.item_metadata(step))
  restored = manager.restore(step, args=ocp.args.StandardRestore(abstract))
  variables = {'params': restored['params'],
               'batch_stats': restored.get('batch_stats', {})}
  return variables, step
