"""Offset voting: disks and offset fields, decoded by Hough voting.

Papandreou et al., "Towards Accurate Multi-person Pose Estimation in the
Wild", CVPR 2017, as the FashionAI winner used it (configs/synthetic.py's
`offsets` variant, configs/fashionai_champion.py). The maps sit on the
heatmap grids of posejax/codecs/heatmap.py.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from posejax import losses
from posejax.codecs import base
from posejax.codecs import heatmap


def render_offsets(keypoints, visibility, heatmap_size, stride: int,
                   radius: float, grid: str = 'centred'):
  """Disk and offset targets (Papandreou et al., "Towards Accurate Multi-person
  Pose Estimation in the Wild", CVPR 2017).

  Returns (disks (..., H, W, K) in {0, 1}: heatmap pixels within `radius`
  of the keypoint; offsets (..., H, W, K, 2): keypoint - pixel, in units of
  `radius`, defined on the disks) and weights (..., K) as
  `render_heatmaps`. Unweighted keypoints have empty disks.
  """
  height, width = heatmap_size
  cx, cy, weight = heatmap.keypoints_on_map(keypoints, visibility,
                                            heatmap_size, stride, grid)
  xs = jnp.arange(width, dtype=jnp.float32)
  ys = jnp.arange(height, dtype=jnp.float32)
  dx = cx[..., None, None, :] - xs[:, None]          # (..., 1, W, K)
  dy = cy[..., None, None, :] - ys[:, None, None]    # (..., H, 1, K)
  dx, dy = jnp.broadcast_arrays(dx, dy)
  disks = ((dx**2 + dy**2 <= radius**2) * weight[..., None, None, :]).astype(jnp.float32)
  offsets = jnp.stack([dx, dy], -1) / radius * disks[..., None]
  return (disks, offsets), weight


def vote(probabilities, offsets, radius: float):
  """Hough voting: each pixel's vote at pixel + offset, weighted by its
  probability, spread over the four nearest pixels (bilinear); the votes'
  maximum, refined to the probability-weighted mean of the votes that land
  within a pixel of it.

  Args:
    probabilities: (..., H, W, K) in [0, 1].
    offsets: (..., H, W, K, 2) in units of `radius`.

  Returns:
    (..., K, 2) positions in heatmap pixels.
  """
  *batch, height, width, k = probabilities.shape
  xs = jnp.arange(width, dtype=jnp.float32)[:, None]
  ys = jnp.arange(height, dtype=jnp.float32)[:, None, None]
  vx = xs + offsets[..., 0] * radius  # (..., H, W, K)
  vy = ys + offsets[..., 1] * radius
  # One row of H*W vote bins per map: (N, H*W) with N = prod(batch) * K.
  p = jnp.moveaxis(probabilities.reshape(-1, height * width, k), -1, 1).reshape(-1, height * width)
  flat_vx = jnp.moveaxis(vx.reshape(-1, height * width, k), -1, 1).reshape(-1, height * width)
  flat_vy = jnp.moveaxis(vy.reshape(-1, height * width, k), -1, 1).reshape(-1, height * width)
  rows = jnp.arange(p.shape[0])[:, None]
  x0, y0 = jnp.floor(flat_vx), jnp.floor(flat_vy)
  fx, fy = flat_vx - x0, flat_vy - y0
  bins = jnp.zeros_like(p)
  for ox, oy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                    (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
    bx, by = x0.astype(jnp.int32) + ox, y0.astype(jnp.int32) + oy
    inside = (bx >= 0) & (bx < width) & (by >= 0) & (by < height)
    index = jnp.clip(by, 0, height - 1) * width + jnp.clip(bx, 0, width - 1)
    bins = bins.at[rows, index].add(jnp.where(inside, p * w, 0.0))
  peak = jnp.argmax(bins, axis=-1)
  px = (peak % width).astype(jnp.float32)[:, None]
  py = (peak // width).astype(jnp.float32)[:, None]
  near = ((flat_vx - px) ** 2 + (flat_vy - py) ** 2 <= 1.0) * p
  total = near.sum(-1)
  found = total > 0
  safe = jnp.where(found, total, 1.0)
  x = jnp.where(found, (near * flat_vx).sum(-1) / safe, px[:, 0])
  y = jnp.where(found, (near * flat_vy).sum(-1) / safe, py[:, 0])
  return jnp.stack([x, y], -1).reshape(*batch, k, 2)


@dataclasses.dataclass(frozen=True)
class OffsetVotingCodec(base.Codec):
  """Per keypoint, a disk classifier and an offset field, decoded by voting.

  The network outputs 3K channels: K disk logits, then K x offsets and K y
  offsets (in units of `radius` heatmap pixels). Training: per-pixel binary
  cross-entropy on the disks (averaged over the map) plus `offset_weight`
  times the Huber loss of the offsets inside the disks (averaged over the
  disk), masked by the keypoint weights (`losses.offset_voting_per_joint`).
  Decoding: `vote`, then the grid's map back to input pixels; a keypoint's
  score is its map's highest disk probability.
  """

  input_size: tuple[int, int]
  stride: int = 4
  radius: float = 3.0  # heatmap pixels
  offset_weight: float = 1.0
  huber_delta: float = 0.3  # in units of radius
  grid: str = 'centred'

  channels = 3

  def __post_init__(self):
    heatmap.check_grid(self.grid)
    base.check_stride(self.input_size, self.stride)
    if self.radius < 1:
      raise ValueError(f'codec.radius must be >= 1 heatmap pixel, got {self.radius}.')

  @property
  def output_size(self) -> tuple[int, int]:
    return base.check_stride(self.input_size, self.stride)

  def encode(self, keypoints, visibility):
    return render_offsets(keypoints, visibility, self.output_size, self.stride,
                          self.radius, self.grid)

  @staticmethod
  def split(output):
    """(..., H, W, 3K) -> logits (..., H, W, K), offsets (..., H, W, K, 2)."""
    k = output.shape[-1] // 3
    output = output.astype(jnp.float32)
    return output[..., :k], jnp.stack([output[..., k:2 * k], output[..., 2 * k:]], -1)

  @staticmethod
  def join(logits, offsets):
    return jnp.concatenate([logits, offsets[..., 0], offsets[..., 1]], -1)

  def joint_losses(self, output, targets, weights):
    self.check_output(output)
    disks, target_offsets = targets
    logits, offsets = self.split(output)
    return losses.offset_voting_per_joint(
        logits, offsets, disks, target_offsets, weights, self.offset_weight,
        self.huber_delta)

  def decode(self, output):
    logits, offsets = self.split(output)
    probabilities = jax.nn.sigmoid(logits)
    xy = vote(probabilities, offsets, self.radius)
    scores = probabilities.max(axis=(-3, -2))
    return heatmap.heatmap_to_input(xy, self.stride, self.grid,
                                    self.output_size), scores

  def flip(self, output, flip_index):
    """The output of the mirrored input: mirrored, pairs swapped, x offsets negated."""
    logits, offsets = self.split(output)
    offsets = offsets[..., ::-1, :, :] * jnp.asarray([-1.0, 1.0])
    offsets = jnp.take(offsets, jnp.asarray(flip_index), axis=-2)
    return self.join(heatmap.flip_heatmaps(logits, flip_index), offsets)

  def merge_flipped(self, output, of_flipped, flip_index):
    return 0.5 * (output.astype(jnp.float32) + self.flip(of_flipped, flip_index))

  def maps(self, output):
    """(..., H, W, K) maps to look at: the disk probabilities."""
    return jax.nn.sigmoid(self.split(output)[0])

  def ideal_output(self, targets):
    """Confident logits (+-8) on and off the disks, the exact offsets."""
    disks, offsets = targets
    return self.join(jnp.where(disks > 0, 8.0, -8.0), offsets)

  @property
  def round_trip_bound(self) -> float:
    # The votes' weighted mean recovers the exact position.
    return 0.1 * heatmap.heatmap_spacing(self.stride, self.grid, self.output_size)


def from_config(config, num_keypoints: int) -> OffsetVotingCodec:
  del num_keypoints  # the same maps for any layout
  if config.eval.flip_shift:
    raise ValueError('eval.flip_shift is for heatmaps on the official grid; '
                     "codec.name='offsets' needs eval.flip_shift=False.")
  return OffsetVotingCodec(
      input_size=tuple(config.input.size), stride=config.codec.stride,
      radius=config.codec.radius, offset_weight=config.codec.offset_weight,
      grid=config.codec.grid)
