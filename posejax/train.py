"""The training loop: periodic eval, early stopping, checkpoints, writers.

`train_and_evaluate(config, workdir)` is importable from a notebook; `main.py`
only parses flags. It reads as setup -> training -> loop:

  experiment.Setup(config)       data, codec, loss, network, mesh, metric
  Setup.build_training           optimiser, replicated state, jitted step
                                 (train_step.build_training)
  loop over steps                the step on a global batch of this host's
                                 share (`sharding.global_batch`); logging,
                                 checkpoints, `EarlyStopping`, the run's one
                                 `evaluation.evaluator.Evaluator`

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
from posejax import experiment
from posejax import sharding
from posejax import train_step
from posejax.checkpoints import imagenet
from posejax.data import pipeline
from posejax.evaluation import evaluator as evaluator_lib


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


class EarlyStopping:
  """`train.early_stopping`: the validation loss every `every_steps` steps.

  The state with the lowest is kept in experiment.BEST_CHECKPOINT_DIR;
  `patience` measurements without a new lowest stop the run, and the final
  evaluation scores the kept state. A restarted run recovers the count from
  the best checkpoint's step. The jitted loss is built once per run.
  """

  def __init__(self, setup, workdir: str, start_step: int):
    self.setup = setup
    stopping = setup.config.train.early_stopping
    self.every, self.patience = stopping.every_steps, stopping.patience
    self.manager = experiment.best_checkpoint_manager(workdir)
    self.best_step = self.manager.best_step()
    self.best_loss = (self.manager.metrics(self.best_step)['validation_loss']
                      if self.best_step is not None else float('inf'))
    self.stale = (start_step - (self.best_step or 0)) // self.every
    self.loss_fn = train_step.make_validation_loss_fn(setup.model, setup.codec,
                                                      setup.loss)

  @property
  def stopped(self) -> bool:
    return self.stale >= self.patience

  def due(self, step: int) -> bool:
    return step % self.every == 0

  def measure(self, state, step: int) -> float:
    """The validation loss of `state`; keeps it if it is the lowest yet."""
    config = self.setup.config
    loss = validation_loss(
        self.loss_fn, state.variables,
        pipeline.eval_dataset(self.setup.builder, config,
                              process_index=jax.process_index(),
                              process_count=jax.process_count()
                              ).as_numpy_iterator(),
        self.setup.mesh, config.eval.batch_size)
    if loss < self.best_loss:
      self.best_loss, self.best_step, self.stale = loss, step, 0
      self.manager.save(step, args=ocp.args.StandardSave(state),
                        metrics={'validation_loss': loss})
    else:
      self.stale += 1
    if self.stopped:
      logging.info('Early stopping at step %d: no lower validation loss in '
                   '%d measurements since step %d (%.6f).', step, self.stale,
                   self.best_step, self.best_loss)
    return loss

  def best_state(self, like):
    """The kept state (shaped as `like`)."""
    self.manager.wait_until_finished()
    return self.manager.restore(self.best_step, args=ocp.args.StandardRestore(
        jax.tree.map(ocp.utils.to_shape_dtype_struct, like)))


def _start_from(setup, fresh: bool):
  """How a fresh run's variables start: with the ImageNet backbone of
  model.pretrained, read and checked against the network before anything is
  compiled; None (the random initialisation) otherwise."""
  config = setup.config
  if not fresh or not config.model.pretrained:
    return None
  try:
    backbone = imagenet.load_backbone(config.model.pretrained, config.model.name,
                                      setup.model, tuple(config.input.size))
  except (FileNotFoundError, ValueError) as e:
    raise experiment.SetupError(str(e)) from e
  return lambda variables: imagenet.with_backbone(variables, backbone)


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains `config` in `workdir` (resuming if it holds checkpoints).

  Returns the final evaluation metrics.
  """
  setup = experiment.Setup(config)
  try:
    distributed.check_same_config(config_lib.flatten(config))
  except ValueError as e:
    raise experiment.SetupError(str(e)) from e
  manager = experiment.checkpoint_manager(workdir, config.train.keep_checkpoints)
  num_steps = config.train.num_steps
  training = setup.build_training(
      start=_start_from(setup, fresh=manager.latest_step() is None))
  state = experiment.restore_latest(manager, training.state)
  start_step = int(state.step)

  writer = metric_writers.create_default_writer(
      workdir, just_logging=jax.process_index() > 0)
  if start_step == 0:
    writer.write_hparams(config_lib.flatten(config))
  logging.info('Parameters: %s',
               f'{sum(x.size for x in jax.tree.leaves(state.params)):,}')

  train_iter = pipeline.train_stream(
      setup.builder, config, setup.codec, start_step=start_step,
      process_index=jax.process_index(),
      process_count=jax.process_count()).as_numpy_iterator()
  report = periodic_actions.ReportProgress(num_train_steps=num_steps, writer=writer)
  hooks = [report]
  if jax.process_index() == 0 and config.train.profile:
    hooks.append(periodic_actions.Profile(num_profile_steps=5, logdir=workdir))
  evaluate = evaluator_lib.Evaluator(setup)
  stopping = (EarlyStopping(setup, workdir, start_step)
              if config.train.early_stopping.every_steps else None)

  pending = []
  metrics = {}
  for step in range(start_step + 1, num_steps + 1):
    if stopping and stopping.stopped:
      break
    with jax.profiler.StepTraceAnnotation('train', step_num=step):
      batch = sharding.global_batch(next(train_iter), setup.mesh)
      state, step_metrics = training.step(state, batch)
    pending.append(step_metrics)
    for hook in hooks:
      hook(step)
    last = step == num_steps
    save = step % config.train.checkpoint_every_steps == 0 or last
    if stopping and stopping.due(step):
      with report.timed('validation'):
        writer.write_scalars(step, {'validation/loss': stopping.measure(state, step)})
      if stopping.stopped:
        save = last = True
    if step % config.train.log_every_steps == 0 or save:
      _log(writer, manager, training.schedule, pending, step, workdir)
      pending = []
    if save:
      manager.save(step, args=ocp.args.StandardSave(state))
    if stopping and last:
      break  # the kept best state is evaluated below
    if (config.train.eval_every_steps and step % config.train.eval_every_steps == 0) or last:
      with report.timed('eval'):
        metrics = evaluate(state.variables, workdir, step, writer)
      writer.write_scalars(step, {f'eval/{k}': v for k, v in metrics.items()})
  # Stop the input pipeline's background threads now rather than at
  # interpreter exit.
  del train_iter
  if stopping and stopping.best_step is not None:
    best = stopping.best_state(state)
    logging.info('Evaluating the state of the lowest validation loss (step %d).',
                 stopping.best_step)
    metrics = evaluate(best.variables, workdir, stopping.best_step, writer)
    writer.write_scalars(stopping.best_step,
                         {f'eval/{k}': v for k, v in metrics.items()})
  elif not metrics:  # Resumed a finished run: evaluate its last checkpoint.
    metrics = evaluate(state.variables, workdir, int(state.step), writer)
  manager.wait_until_finished()
  writer.flush()
  return metrics


def _log(writer, manager, schedule, pending, step: int, workdir: str) -> None:
  """Writes the mean of the pending step metrics; stops on a non-finite loss.

  The only host sync of the loop, at logging (and checkpoint) steps.
  """
  fetched = jax.device_get(pending)
  summary = {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0]}
  if not np.isfinite(summary['loss']):
    manager.wait_until_finished()
    raise FloatingPointError(
        f'Loss is {summary["loss"]} at step {step}; stopping. The last good '
        f'checkpoint (step {manager.latest_step()}) is kept in {workdir}. '
        'Lower optim.learning_rate or raise optim.warmup_steps.')
  summary['learning_rate'] = float(schedule(step - 1))
  writer.write_scalars(step, summary)
