"""All loss arithmetic; every stage of a multi-stage network is supervised.

Per keypoint: the masked heatmap MSE (Gaussian heatmaps) and the disk
cross-entropy plus offset Huber loss (offset voting), each (B, K) for one
stage. A codec picks its own (`Codec.joint_losses`, posejax/codecs/), and
`Loss` reduces the stages' (B, K) losses to the training loss: optionally
only the hardest keypoints (online hard keypoint mining), the stages weighed.
"""

from __future__ import annotations

from collections.abc import Sequence
import dataclasses

import jax
import jax.numpy as jnp
import optax

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


def offset_voting_per_joint(logits, offsets, disks, target_offsets, weight,
                            offset_weight: float, huber_delta: float) -> jax.Array:
  """(B, K) disk cross-entropy plus `offset_weight` x offset Huber loss.

  logits, disks (B, H, W, K); offsets, target_offsets (B, H, W, K, 2) in
  units of the disk radius. The cross-entropy is averaged over the map, the
  Huber loss over each keypoint's disk; `weight` (B, K) masks joints.
  """
  classification = jnp.mean(
      optax.sigmoid_binary_cross_entropy(logits, disks), axis=(1, 2))
  huber = optax.huber_loss(offsets, target_offsets, delta=huber_delta).sum(-1)
  inside = disks.sum(axis=(1, 2))
  regression = (huber * disks).sum(axis=(1, 2)) / jnp.maximum(inside, 1.0)
  return weight * (classification + offset_weight * regression)


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
  # Indices of the supervised outputs that are mined (negative from the
  # end); None: every output. CPN mines only RefineNet's, MSPN each stage's
  # finest.
  ohkm_stages: tuple[int, ...] | None = None

  def __post_init__(self):
    if self.ohkm_scope not in OHKM_SCOPES:
      raise ValueError(f'loss.ohkm_scope must be one of {OHKM_SCOPES}, got '
                       f'{self.ohkm_scope!r}.')
    if self.ohkm_topk < 0:
      raise ValueError(f'loss.ohkm_topk must be >= 0, got {self.ohkm_topk}.')

  def __call__(self, stage_losses: Sequence[jax.Array]) -> jax.Array:
    """Weighted sum over stages of each stage's (mined) (B, K) losses."""
    weights = self.stage_weights or (1.0,) * len(stage_losses)
    if len(weights) != len(stage_losses):
      raise ValueError(
          f'loss.stage_weights has {len(weights)} entries but the model '
          f'returns {len(stage_losses)} stages.')
    mined = self._mined(len(stage_losses))
    return sum(w * hard_keypoint_mean(j, self.ohkm_topk if i in mined else 0,
                                      self.ohkm_scope)
               for i, (w, j) in enumerate(zip(weights, stage_losses)))

  def _mined(self, num_outputs: int) -> frozenset[int]:
    if self.ohkm_stages is None:
      return frozenset(range(num_outputs))
    for i in self.ohkm_stages:
      if not -num_outputs <= i < num_outputs:
        raise ValueError(
            f'loss.ohkm_stages has index {i} but the model returns '
            f'{num_outputs} supervised outputs.')
    return frozenset(i % num_outputs for i in self.ohkm_stages)

  def every_keypoint(self) -> Loss:
    """The same loss without mining: validation losses that compare across runs."""
    return dataclasses.replace(self, ohkm_topk=0)


def loss_from_config(loss_config) -> Loss:
  stage_weights = loss_config.stage_weights
  ohkm_stages = loss_config.ohkm_stages
  return Loss(stage_weights=None if stage_weights is None else tuple(stage_weights),
              ohkm_topk=loss_config.ohkm_topk, ohkm_scope=loss_config.ohkm_scope,
              ohkm_stages=None if ohkm_stages is None else tuple(int(i) for i in ohkm_stages))


def masked_heatmap_mse_per_joint(pred: jax.Array, target: jax.Array,
                                 mask: jax.Array) -> jax.Array:
  """(B, K) MSE of (B, H, W, K) maps over the pixels `mask` (B, H, W) keeps.

  The bottom-up heatmap loss of HigherHRNet (and associative embedding):
  every keypoint's map is supervised, an absent one toward zero; pixels of
  ignored regions (crowds, people without keypoints) count as zero error.
  Not halved, averaged over all pixels, as the official `HeatmapLoss`.
  """
  diff = (pred.astype(jnp.float32) - target) * mask[..., None]
  return jnp.mean(diff**2, axis=(1, 2))


def tag_pull_push(tags: jax.Array, valid: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The associative-embedding grouping loss per image (Newell et al. 2017).

  Args:
    tags: (B, P, K, L) the predicted tags at every person's keypoints.
    valid: (B, P, K) whether each keypoint is labelled and on the map.

  Returns:
    (pull, push), each (B,): pull, each person's squared tag distance to
    their mean tag, averaged over their keypoints and over the people; push,
    exp(-d^2) of the squared distance between every two people's mean
    tags, averaged over ordered pairs and halved; both 0 without people
    (push also with one), as the official HigherHRNet `AELoss` ('exp').
  """
  tags = tags.astype(jnp.float32)
  v = valid.astype(jnp.float32)
  count = v.sum(-1)  # (B, P)
  person = (count > 0).astype(jnp.float32)
  mean = (tags * v[..., None]).sum(2) / jnp.maximum(count, 1.0)[..., None]
  spread = (((tags - mean[:, :, None]) ** 2) * v[..., None]).sum((2, 3))
  # The official code averages over the tag dimensions too.
  spread = spread / (jnp.maximum(count, 1.0) * tags.shape[-1])
  people = person.sum(-1)
  pull = (spread * person).sum(-1) / jnp.maximum(people, 1.0)
  distance = ((mean[:, :, None] - mean[:, None]) ** 2).sum(-1)  # (B, P, P)
  pair = person[:, :, None] * person[:, None]
  push = (jnp.exp(-distance) * pair).sum((1, 2)) - people
  push = jnp.where(people > 1, 0.5 * push / jnp.maximum((people - 1) * people, 1.0),
                   0.0)
  return pull, push
