"""Heatmap losses; every stage of a multi-stage network is supervised."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp


def heatmap_mse(pred: jax.Array, target: jax.Array, weight: jax.Array) -> jax.Array:
  """Masked MSE of (B, H, W, K) maps; `weight` (B, K) masks joints.

  Halved and averaged over every pixel of every joint, as in the HRNet and
  SimpleBaselines JointsMSELoss, so that loss values compare with theirs.
  """
  pred = pred.astype(jnp.float32)
  diff = (pred - target) * weight[:, None, None, :]
  return 0.5 * jnp.mean(diff**2)


def multi_stage_loss(
    outputs: Sequence[jax.Array],
    target: jax.Array,
    weight: jax.Array,
    stage_weights: Sequence[float] | None = None,
) -> jax.Array:
  """Sum over stages of the masked MSE (intermediate supervision)."""
  if stage_weights is None:
    stage_weights = [1.0] * len(outputs)
  if len(stage_weights) != len(outputs):
    raise ValueError(
        f'loss.stage_weights has {len(stage_weights)} entries but the model '
        f'returns {len(outputs)} stages.')
  for o in outputs:
    # Checked while tracing, before anything is compiled.
    if o.shape[1:3] != target.shape[1:3]:
      raise ValueError(
          f'The network returns {o.shape[1]}x{o.shape[2]} heatmaps but the '
          f'codec renders {target.shape[1]}x{target.shape[2]} targets (input '
          'size / codec.stride): set codec.stride to the network\'s output '
          'stride (e.g. model.stride for HRNet and the hourglass).')
  return sum(w * heatmap_mse(o, target, weight)
             for w, o in zip(stage_weights, outputs))
