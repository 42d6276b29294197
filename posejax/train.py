"""The training loop: state, sharded step, periodic eval, checkpoints, writers.

`train_and_evaluate(config, workdir)` is importable from a notebook; `main.py`
only parses flags. The step is one `jax.jit` with explicit shardings: the batch
is split over the mesh axis `data`, the state is replicated and donated.
Heatmap targets are rendered inside the step from the keypoints. With
`train.early_stopping` the loop also measures the validation loss, keeps the
state where it was lowest and stops when it no longer improves.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from absl import logging
import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

from posejax import codecs
from posejax import config_lib
from posejax import keypoints as keypoints_lib
from posejax import losses
from posejax import models
from posejax import sharding
from posejax.models import common


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any

  @property
  def variables(self):
    return {'params': self.params, 'batch_stats': self.batch_stats}


def make_schedule(optim_config, num_steps: int) -> optax.Schedule:
  """Linear warm-up, then cosine to zero or step decay at fixed steps."""
  lr = optim_config.learning_rate
  warmup = optim_config.warmup_steps
  if optim_config.schedule == 'cosine':
    main = optax.cosine_decay_schedule(lr, max(num_steps - warmup, 1))
  elif optim_config.schedule == 'step':
    main = optax.piecewise_constant_schedule(
        lr, {int(b) - warmup: optim_config.decay_factor
             for b in optim_config.decay_steps})
  else:
    raise ValueError(f"optim.schedule must be 'cosine' or 'step', got "
                     f'{optim_config.schedule!r}.')
  if warmup == 0:
    return main
  return optax.join_schedules(
      [optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def make_optimizer(optim_config, num_steps: int):
  schedule = make_schedule(optim_config, num_steps)
  if optim_config.weight_decay:
    tx = optax.adamw(schedule, weight_decay=optim_config.weight_decay)
  else:
    tx = optax.adam(schedule)
  if optim_config.grad_clip_norm:
    tx = optax.chain(optax.clip_by_global_norm(optim_config.grad_clip_norm), tx)
  return tx, schedule


def create_train_state(model, tx, rng, input_size, mesh) -> TrainState:
  """Initialises the replicated state directly on the mesh."""
  def init(rng):
    x = jnp.zeros((1, *input_size, 3), model.dtype)
    variables = model.init(rng, x, train=False)
    params = variables['params']
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get('batch_stats', {}),
                      opt_state=tx.init(params))
  return jax.jit(init, out_shardings=sharding.replicated(mesh))(rng)


def train_step(state: TrainState, batch: dict, *, model, codec, tx,
               stage_weights=None):
  """One optimisation step on a global batch; returns the state and metrics."""
  images = common.model_inputs(model, batch['image'])
  targets, weights = codec.encode(batch['keypoints'], batch['visibility'])

  def loss_fn(params):
    outputs, new_model_state = model.apply(
        {'params': params, 'batch_stats': state.batch_stats}, images,
        train=True, mutable=['batch_stats'])
    loss = losses.multi_stage_loss(outputs, targets, weights, stage_weights)
    return loss, new_model_state

  (loss, new_model_state), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  new_state = state.replace(
      step=state.step + 1,
      params=optax.apply_updates(state.params, updates),
      batch_stats=new_model_state['batch_stats'],
      opt_state=opt_state)
  metrics = {'loss': loss, 'grad_norm': optax.tree.norm(grads)}
  return new_state, metrics


def jit_train_step(model, codec, tx, mesh, state, stage_weights=None):
  """The sharded, donating jit of `train_step` for this mesh."""
  step = functools.partial(train_step, model=model, codec=codec, tx=tx,
                           stage_weights=stage_weights)
  state_sharding = jax.tree.map(lambda x: x.sharding, state)
  return jax.jit(
      step,
      in_shardings=(state_sharding, sharding.data_sharding(mesh)),
      out_shardings=(state_sharding, sharding.replicated(mesh)),
      donate_argnums=(0,))


def checkpoint_manager(workdir: str, keep: int) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), 'checkpoints'),
      options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))


# Where early stopping keeps the state of the lowest validation loss.
BEST_CHECKPOINT_DIR = 'best_checkpoint'


def best_checkpoint_manager(workdir: str) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), BEST_CHECKPOINT_DIR),
      options=ocp.CheckpointManagerOptions(
          max_to_keep=1, create=True, best_mode='min',
          best_fn=lambda metrics: metrics['validation_loss']))


def make_validation_loss_fn(model, codec, stage_weights=None):
  """(variables, images, keypoints, visibility, valid) -> summed loss.

  The training loss in inference mode (BatchNorm running statistics), times
  the batch size, so that it sums over instances; rows with `valid` False
  (padding of a short last batch) contribute nothing.
  """
  def loss_sum(variables, images, keypoints, visibility, valid):
    targets, weights = codec.encode(keypoints, visibility)
    outputs = model.apply(variables, common.model_inputs(model, images), train=False)
    weights = weights * valid[:, None].astype(weights.dtype)
    return images.shape[0] * losses.multi_stage_loss(
        outputs, targets, weights, stage_weights)
  return jax.jit(loss_sum)


def validation_loss(loss_fn, variables, batches, mesh, batch_size: int) -> float:
  """Mean per-instance loss over host batches (the last may be short)."""
  total, count = 0.0, 0
  for batch in batches:
    n = len(batch['image'])
    padded = {k: np.concatenate([batch[k], np.repeat(batch[k][-1:], batch_size - n, 0)])
              for k in ('image', 'keypoints', 'visibility')}
    padded['valid'] = np.arange(batch_size) < n
    g = sharding.global_batch(padded, mesh)
    total += float(loss_fn(variables, g['image'], g['keypoints'], g['visibility'],
                           g['valid']))
    count += n
  if not count:
    raise ValueError('Early stopping: the eval split has no instance to '
                     'measure the validation loss on.')
  return total / count


def restore_latest(manager: ocp.CheckpointManager, state: TrainState) -> TrainState:
  step = manager.latest_step()
  if step is None:
    return state
  logging.info('Resuming from the checkpoint of step %d.', step)
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
  return manager.restore(step, args=ocp.args.StandardRestore(abstract))


class SetupError(ValueError):
  """The config or the data cannot run; the message names the fix."""


class Setup:
  """Everything a run derives from its config, built before any compilation."""

  def __init__(self, config):
    try:
      self._build(config)
    except (ValueError, FileNotFoundError, AssertionError) as e:
      raise SetupError(str(e)) from e

  def _build(self, config):
    from posejax import data  # TensorFlow stays out of the model/step imports.
    config_lib.validate(config)
    self.config = config
    self.spec = keypoints_lib.get_spec(config.dataset.keypoints)
    self.codec = codecs.codec_from_config(config)
    self.model = models.build_model(config.model, self.spec.num_keypoints)
    self.mesh = sharding.make_mesh(config.mesh)
    sharding.check_batch_size(config.train.global_batch_size, self.mesh,
                              'train.global_batch_size')
    sharding.check_batch_size(config.eval.batch_size, self.mesh, 'eval.batch_size')
    from posejax import eval as eval_lib  # pylint: disable=g-import-not-at-top
    self.metric = eval_lib.metric_name(config)
    self.builder = data.get_builder(config.dataset)


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains `config` in `workdir` (resuming if it holds checkpoints).

  Returns the final evaluation metrics.
  """
  # clu's writers and tf.data load TensorFlow: imported here, so that the
  # step and the state stay importable without it (benchmarks, notebooks).
  from clu import metric_writers
  from clu import periodic_actions
  from posejax import eval as eval_lib
  from posejax.data import pipeline

  setup = Setup(config)
  model, mesh = setup.model, setup.mesh
  num_steps = config.train.num_steps
  tx, schedule = make_optimizer(config.optim, num_steps)
  # XLA:CPU compiles the default threefry PRNG very slowly (20 s for a small
  # HRNet's init); the RngBitGenerator-based 'rbg' compiles in a few seconds.
  init_rng = jax.random.key(config.seed, impl='rbg')
  state = create_train_state(model, tx, init_rng, tuple(config.input.size), mesh)
  manager = checkpoint_manager(workdir, config.train.keep_checkpoints)
  state = restore_latest(manager, state)
  start_step = int(state.step)

  writer = metric_writers.create_default_writer(
      workdir, just_logging=jax.process_index() > 0)
  if start_step == 0:
    writer.write_hparams(config_lib.flatten(config))
  logging.info('Parameters: %s',
               f'{sum(x.size for x in jax.tree.leaves(state.params)):,}')

  step_fn = jit_train_step(model, setup.codec, tx, mesh, state,
                           config.loss.get('stage_weights'))
  train_iter = pipeline.train_dataset(
      setup.builder, config, start_step=start_step,
      process_index=jax.process_index(),
      process_count=jax.process_count()).as_numpy_iterator()
  report = periodic_actions.ReportProgress(num_train_steps=num_steps, writer=writer)
  hooks = [report]
  if jax.process_index() == 0 and config.train.get('profile', False):
    hooks.append(periodic_actions.Profile(num_profile_steps=5, logdir=workdir))

  # Early stopping (train.early_stopping.every_steps > 0): the validation
  # loss every `every_steps` steps; the state with the lowest is kept in
  # BEST_CHECKPOINT_DIR; `patience` measurements without a new lowest stop the
  # run, and the final evaluation scores the kept state. A restarted run
  # recovers the count from the best checkpoint's step.
  stopping = config.train.get('early_stopping') or {}
  every = stopping.get('every_steps', 0)
  if every:
    best_manager = best_checkpoint_manager(workdir)
    best_step = best_manager.best_step()
    best_loss = (best_manager.metrics(best_step)['validation_loss']
                 if best_step is not None else float('inf'))
    loss_fn = make_validation_loss_fn(model, setup.codec,
                                      config.loss.get('stage_weights'))
    stale = (start_step - (best_step or 0)) // every
  stopped = every and stale >= stopping.patience

  pending = []
  metrics = {}
  for step in range(start_step + 1, num_steps + 1):
    if stopped:
      break
    with jax.profiler.StepTraceAnnotation('train', step_num=step):
      batch = sharding.global_batch(next(train_iter), mesh)
      state, step_metrics = step_fn(state, batch)
    pending.append(step_metrics)
    for hook in hooks:
      hook(step)
    last = step == num_steps
    save = step % config.train.checkpoint_every_steps == 0 or last
    if every and step % every == 0:
      with report.timed('validation'):
        loss = validation_loss(
            loss_fn, state.variables,
            pipeline.eval_dataset(setup.builder, config,
                                  ground_truth_boxes=True).as_numpy_iterator(),
            mesh, config.eval.batch_size)
      writer.write_scalars(step, {'validation/loss': loss})
      if loss < best_loss:
        best_loss, best_step, stale = loss, step, 0
        best_manager.save(step, args=ocp.args.StandardSave(state),
                          metrics={'validation_loss': loss})
      else:
        stale += 1
      if stale >= stopping.patience:
        logging.info('Early stopping at step %d: no lower validation loss in '
                     '%d measurements since step %d (%.6f).', step, stale,
                     best_step, best_loss)
        stopped = True
        save = last = True
    if step % config.train.log_every_steps == 0 or save:
      # The only host sync of the loop, at logging (and checkpoint) steps.
      fetched = jax.device_get(pending)
      summary = {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0]}
      pending = []
      if not np.isfinite(summary['loss']):
        manager.wait_until_finished()
        raise FloatingPointError(
            f'Loss is {summary["loss"]} at step {step}; stopping. The last good '
            f'checkpoint (step {manager.latest_step()}) is kept in {workdir}. '
            'Lower optim.learning_rate or raise optim.warmup_steps.')
      summary['learning_rate'] = float(schedule(step - 1))
      writer.write_scalars(step, summary)
    if save:
      manager.save(step, args=ocp.args.StandardSave(state))
    if every and last:
      break  # the kept best state is evaluated below
    if (config.train.eval_every_steps and step % config.train.eval_every_steps == 0) or last:
      with report.timed('eval'):
        metrics = eval_lib.evaluate(setup, state.variables, workdir, step)
      writer.write_scalars(step, {f'eval/{k}': v for k, v in metrics.items()})
  # Stop the input pipeline's background threads now rather than at
  # interpreter exit.
  del train_iter
  if every and best_step is not None:
    best_manager.wait_until_finished()
    best = best_manager.restore(best_step, args=ocp.args.StandardRestore(
        jax.tree.map(ocp.utils.to_shape_dtype_struct, state)))
    logging.info('Evaluating the state of the lowest validation loss (step %d).',
                 best_step)
    metrics = eval_lib.evaluate(setup, best.variables, workdir, best_step)
    writer.write_scalars(best_step, {f'eval/{k}': v for k, v in metrics.items()})
  elif not metrics:  # Resumed a finished run: evaluate its last checkpoint.
    metrics = eval_lib.evaluate(setup, state.variables, workdir, int(state.step))
  manager.wait_until_finished()
  writer.flush()
  return metrics
