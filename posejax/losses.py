"""Keypoint losses; every stage of a multi-stage network is supervised.

A codec scores one stage's output against its targets per instance and
keypoint (`codec.joint_losses`, (B, K)): the Gaussian heatmap codec with the
masked MSE below, the offset-voting codec with its disk cross-entropy and
offset Huber loss (posejax/codecs.py). `Loss` reduces those to a scalar,
optionally keeping only the hardest keypoints (online hard keypoint mining),
and weighs the stages.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import dataclasses

import jax
import jax.numpy as jnp

OHKM_SCOPES = ('instance', 'batch')


def heatmap_mse_per_joint(pred: jax.Array, target: jax.Array,
                          weight: jax.Array) -> jax.Array:
  """(B, K) masked MSE of (B, H, W, K) maps, halved, averaged over pixels.

  As in the HRNet and SimpleBaselines JointsMSELoss, so that loss values
  compare with theirs; `weight` (B, K) masks joints.
  """
  pred = pred.astype(jnp.float32)
  diff = (pred - target) * weight[:, None, None, :]
  return 0.5 * jnp.mean(diff**2, axis=(1, 2))


def heatmap_mse(pred: jax.Array, target: jax.Array, weight: jax.Array) -> jax.Array:
  """The masked MSE averaged over every pixel of every joint."""
  return jnp.mean(heatmap_mse_per_joint(pred, target, weight))


def hard_keypoint_mean(joint_losses: jax.Array, topk: int,
                       scope: str = 'instance') -> jax.Array:
  """Online hard keypoint mining: the mean of the `topk` largest losses.

  `joint_losses` (B, K). With scope 'instance' the k largest of each
  instance (CPN, Chen et al. CVPR 2018: 8 of COCO's 17), averaged over the
  batch; with 'batch', the `topk * B` largest of the whole batch, so that
  instances with many hard keypoints weigh more (as the FashionAI winner
  mined across the batch). topk >= K keeps every keypoint.
  """
  if scope not in OHKM_SCOPES:
    raise ValueError(f'loss.ohkm_scope must be one of {OHKM_SCOPES}, got {scope!r}.')
  batch, k = joint_losses.shape
  if topk <= 0 or topk >= k:
    return jnp.mean(joint_losses)
  if scope == 'instance':
    return jnp.mean(jax.lax.top_k(joint_losses, topk)[0])
  return jnp.mean(jax.lax.top_k(joint_losses.reshape(-1), topk * batch)[0])


@dataclasses.dataclass(frozen=True)
class Loss:
  """How the stages' per-keypoint losses become the training loss."""

  # Weight of each supervised stage (None: 1 each).
  stage_weights: tuple[float, ...] | None = None
  # Online hard keypoint mining: keep the `ohkm_topk` hardest keypoints per
  # instance (or `ohkm_topk` x batch size over the batch); 0 keeps all.
  ohkm_topk: int = 0
  ohkm_scope: str = 'instance'

  def __post_init__(self):
    if self.ohkm_scope not in OHKM_SCOPES:
      raise ValueError(f'loss.ohkm_scope must be one of {OHKM_SCOPES}, got '
                       f'{self.ohkm_scope!r}.')
    if self.ohkm_topk < 0:
      raise ValueError(f'loss.ohkm_topk must be >= 0, got {self.ohkm_topk}.')

  def __call__(self, outputs: Sequence[jax.Array], targets, weights: jax.Array,
               joint_losses: Callable = heatmap_mse_per_joint) -> jax.Array:
    return multi_stage_loss(outputs, targets, weights, self.stage_weights,
                            joint_losses, self.ohkm_topk, self.ohkm_scope)


def loss_from_config(loss_config) -> Loss:
  stage_weights = loss_config.get('stage_weights')
  return Loss(stage_weights=None if stage_weights is None else tuple(stage_weights),
              ohkm_topk=loss_config.get('ohkm_topk', 0),
              ohkm_scope=loss_config.get('ohkm_scope', 'instance'))


def multi_stage_loss(
    outputs: Sequence[jax.Array],
    targets,
    weight: jax.Array,
    stage_weights: Sequence[float] | None = None,
    joint_losses: Callable = heatmap_mse_per_joint,
    ohkm_topk: int = 0,
    ohkm_scope: str = 'instance',
) -> jax.Array:
  """Weighted sum over stages of each stage's (mined) keypoint loss."""
  if stage_weights is None:
    stage_weights = [1.0] * len(outputs)
  if len(stage_weights) != len(outputs):
    raise ValueError(
        f'loss.stage_weights has {len(stage_weights)} entries but the model '
        f'returns {len(outputs)} stages.')
  target_size = jax.tree.leaves(targets)[0].shape[1:3]
  for o in outputs:
    # Checked while tracing, before anything is compiled.
    if o.shape[1:3] != target_size:
      raise ValueError(
          f'The network returns {o.shape[1]}x{o.shape[2]} heatmaps but the '
          f'codec renders {target_size[0]}x{target_size[1]} targets (input '
          'size / codec.stride): set codec.stride to the network\'s output '
          'stride (e.g. model.stride for HRNet and the hourglass).')
  return sum(w * hard_keypoint_mean(joint_losses(o, targets, weight), ohkm_topk,
                                    ohkm_scope)
             for w, o in zip(stage_weights, outputs))
