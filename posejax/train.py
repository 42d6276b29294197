"""The training loop: periodic eval, early stopping, checkpoints, writers.

`train_and_evaluate(config, workdir)` is importable from a notebook; `main.py`
only parses flags. Each step is `train_step.jit_train_step` on a global batch
assembled from this host's share of the data (`sharding.global_batch`).

Resume order: a run starts from the latest checkpoint in `workdir`
(`experiment.restore_latest`), and the input pipeline skips to the batch of
the next step, so a restarted run continues on the same data. With
`train.early_stopping` the loop also measures the validation loss, keeps the
state where it was lowest and stops when it no longer improves.
"""

from __future__ import annotations

from absl import logging
from clu import metric_writers
from clu import periodic_actions
import jax
import numpy as np
import orbax.checkpoint as ocp

from posejax import config_lib
from posejax import distributed
from posejax import evaluate
from posejax import experiment
from posejax import pretrained
from posejax import sharding
from posejax import train_step
from posejax.data import pipeline


def validation_loss(loss_fn, variables, batches, mesh, batch_size: int) -> float:
  """Mean per-instance loss over this process's eval batches (the last may
  be short), and over every process's when there are several.

  `batch_size` is global; the loss sums and instance counts come back from
  the jitted `loss_fn` already summed over the whole mesh.
  """
  total, count = 0.0, 0
  fields = ('image', 'keypoints', 'visibility')
  blank = None
  for batch, real in distributed.lockstep(batches, lambda: blank):
    blank = {k: batch[k][:1] for k in fields}
    padded, valid = sharding.pad_batch({k: batch[k] for k in fields},
                                       sharding.local_batch_size(batch_size))
    g = sharding.global_batch({**padded, 'valid': valid & real}, mesh)
    loss_sum, n = loss_fn(variables, g['image'], g['keypoints'], g['visibility'],
                          g['valid'])
    total += float(loss_sum)
    count += int(n)
  if not count:
    raise ValueError('Early stopping: the eval split has no instance to '
                     'measure the validation loss on.')
  return total / count


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains `config` in `workdir` (resuming if it holds checkpoints).

  Returns the final evaluation metrics.
  """
  setup = experiment.Setup(config)
  model, mesh = setup.model, setup.mesh
  try:
    distributed.check_same_config(config_lib.flatten(config))
  except ValueError as e:
    raise experiment.SetupError(str(e)) from e
  manager = experiment.checkpoint_manager(workdir, config.train.keep_checkpoints)
  backbone = None
  if manager.latest_step() is None and config.model.get('pretrained'):
    # A fresh run from an ImageNet backbone: read and checked against the
    # network before anything is compiled.
    try:
      backbone = pretrained.load_backbone(config.model.pretrained,
                                          config.model.name, model,
                                          tuple(config.input.size))
    except (FileNotFoundError, ValueError) as e:
      raise experiment.SetupError(str(e)) from e
  num_steps = config.train.num_steps
  tx, schedule = train_step.make_optimizer(config.optim, num_steps)
  # XLA:CPU compiles the default threefry PRNG into a network's init very
  # slowly; the RngBitGenerator-based 'rbg' compiles several times faster.
  init_rng = jax.random.key(config.seed, impl='rbg')
  state = train_step.create_train_state(model, tx, init_rng,
                                        tuple(config.input.size), mesh)
  if backbone is not None:
    variables = jax.device_put(pretrained.with_backbone(state.variables, backbone),
                               sharding.replicated(mesh))
    state = state.replace(**variables)
  state = experiment.restore_latest(manager, state)
  start_step = int(state.step)

  writer = metric_writers.create_default_writer(
      workdir, just_logging=jax.process_index() > 0)
  if start_step == 0:
    writer.write_hparams(config_lib.flatten(config))
  logging.info('Parameters: %s',
               f'{sum(x.size for x in jax.tree.leaves(state.params)):,}')

  step_fn = train_step.jit_train_step(model, setup.codec, tx, mesh, state, setup.loss)
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
  # experiment.BEST_CHECKPOINT_DIR; `patience` measurements without a new
  # lowest stop the run, and the final evaluation scores the kept state. A
  # restarted run recovers the count from the best checkpoint's step.
  stopping = config.train.get('early_stopping') or {}
  every = stopping.get('every_steps', 0)
  if every:
    best_manager = experiment.best_checkpoint_manager(workdir)
    best_step = best_manager.best_step()
    best_loss = (best_manager.metrics(best_step)['validation_loss']
                 if best_step is not None else float('inf'))
    loss_fn = train_step.make_validation_loss_fn(model, setup.codec, setup.loss)
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
            pipeline.eval_dataset(
                setup.builder, config, process_index=jax.process_index(),
                process_count=jax.process_count()).as_numpy_iterator(),
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
        metrics = evaluate.evaluate(setup, state.variables, workdir, step, writer)
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
    metrics = evaluate.evaluate(setup, best.variables, workdir, best_step, writer)
    writer.write_scalars(best_step, {f'eval/{k}': v for k, v in metrics.items()})
  elif not metrics:  # Resumed a finished run: evaluate its last checkpoint.
    metrics = evaluate.evaluate(setup, state.variables, workdir, int(state.step),
                                writer)
  manager.wait_until_finished()
  writer.flush()
  return metrics
