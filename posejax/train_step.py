"""The training step: state, optimiser, sharded jit; no TensorFlow.

`train_step` renders the codec's targets on device from the keypoints
(posejax/codecs), runs the model, supervises every stage (`losses.Loss` of
the codec's per-keypoint losses) and applies the optax update.
`jit_train_step` jits it with explicit shardings: the batch is split over
the mesh axis `data`, the state is replicated and donated.
`build_training` wires optimiser, state and jitted step in one call; the loop
around it is `train.py`; `benchmark.py`, the tests and notebooks call it
directly, without the input pipeline.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from posejax import batches
from posejax import losses
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
  """Linear warm-up, then cosine or linear decay to zero, or step decay at
  fixed steps."""
  lr = optim_config.learning_rate
  warmup = optim_config.warmup_steps
  if optim_config.schedule == 'cosine':
    main = optax.cosine_decay_schedule(lr, max(num_steps - warmup, 1))
  elif optim_config.schedule == 'linear':  # MSPN's
    main = optax.linear_schedule(lr, 0.0, max(num_steps - warmup, 1))
  elif optim_config.schedule == 'step':
    main = optax.piecewise_constant_schedule(
        lr, {int(b) - warmup: optim_config.decay_factor
             for b in optim_config.decay_steps})
  else:
    raise ValueError(f"optim.schedule must be 'cosine', 'linear' or 'step', got "
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


def stage_losses(codec, outputs, targets, weights) -> list[jax.Array]:
  """The codec's (B, K) losses of every supervised output."""
  return codec.stage_losses(outputs, targets, weights)


def train_step(state: TrainState, batch: batches.TrainBatch, *, model, codec,
               tx, loss: losses.Loss):
  """One optimisation step on a global batch; returns the state and metrics."""
  images = common.model_inputs(model, batch['image'])
  targets, weights = codec.encode_batch(batch)

  def loss_fn(params):
    outputs, new_model_state = model.apply(
        {'params': params, 'batch_stats': state.batch_stats}, images,
        train=True, mutable=['batch_stats'])
    value = loss(stage_losses(codec, outputs, targets, weights))
    return value, new_model_state

  (value, new_model_state), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  new_state = state.replace(
      step=state.step + 1,
      params=optax.apply_updates(state.params, updates),
      batch_stats=new_model_state['batch_stats'],
      opt_state=opt_state)
  metrics = {'loss': value, 'grad_norm': optax.tree.norm(grads)}
  return new_state, metrics


def jit_train_step(model, codec, tx, mesh, state, loss: losses.Loss):
  """The sharded, donating jit of `train_step` for this mesh."""
  step = functools.partial(train_step, model=model, codec=codec, tx=tx, loss=loss)
  state_sharding = jax.tree.map(lambda x: x.sharding, state)
  return jax.jit(
      step,
      in_shardings=(state_sharding, sharding.data_sharding(mesh)),
      out_shardings=(state_sharding, sharding.replicated(mesh)),
      donate_argnums=(0,))


@dataclasses.dataclass(frozen=True)
class Training:
  """What updates the parameters: the state, the jitted step and its schedule."""

  state: TrainState
  step: Any  # jitted (state, TrainBatch) -> (state, metrics); donates state
  schedule: optax.Schedule
  tx: optax.GradientTransformation


def build_training(model, codec, loss: losses.Loss, mesh, optim_config, *,
                   num_steps: int, input_size, seed: int = 0,
                   start=None) -> Training:
  """Optimiser, replicated train state and sharded jitted step, in one call.

  `start`, if given, maps the initial variables (params and batch_stats) to
  those training starts from, e.g. with an ImageNet backbone merged in.
  """
  tx, schedule = make_optimizer(optim_config, num_steps)
  # XLA:CPU compiles the default threefry PRNG into a network's init very
  # slowly; the RngBitGenerator-based 'rbg' compiles several times faster.
  state = create_train_state(model, tx, jax.random.key(seed, impl='rbg'),
                             tuple(input_size), mesh)
  if start is not None:
    state = state.replace(**jax.device_put(start(state.variables),
                                           sharding.replicated(mesh)))
  step = jit_train_step(model, codec, tx, mesh, state, loss)
  return Training(state=state, step=step, schedule=schedule, tx=tx)


def make_validation_loss_fn(model, codec, loss: losses.Loss):
  """(variables, images, keypoints, visibility, valid) -> (loss sum, count).

  The training loss in inference mode (BatchNorm running statistics), over
  every keypoint (no hard keypoint mining, so that runs with and without it
  compare), summed over the batch's instances, and their number; rows with `valid` False
  (padding of a short last batch) count for nothing. Both are global sums
  over the mesh.
  """
  every_keypoint = loss.every_keypoint()

  def loss_sum(variables, images, keypoints, visibility, valid):
    targets, weights = codec.encode(keypoints, visibility)
    outputs = model.apply(variables, common.model_inputs(model, images), train=False)
    weights = weights * valid[:, None].astype(weights.dtype)
    total = images.shape[0] * every_keypoint(
        stage_losses(codec, outputs, targets, weights))
    return total, valid.sum()
  return jax.jit(loss_sum)
