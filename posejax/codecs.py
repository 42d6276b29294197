"""Keypoints <-> heatmaps: Gaussian rendering, decoding and flipping, in jnp.

Coordinates follow docs/conventions.md: (x, y), 0-based, the centre of the
top-left pixel is (0, 0), in input-image pixels. A heatmap of stride `s`
covers the input exactly, so heatmap pixel edges line up with input pixel
edges:

    x_heatmap = (x_input + 0.5) / s - 0.5

With this convention a horizontal flip of the heatmap array is exactly a flip of
the input (x -> W - 1 - x in both), so flip test needs no pixel shift.
`shift_heatmaps_right` is the one-pixel shift the official HRNet and
SimpleBaselines code applies instead (TEST.SHIFT_HEATMAP): their heatmap pixel j
sits on input pixel s * j rather than s * j + (s - 1) / 2, so their
flipped-back maps land 0.75 pixel left of the plain ones. It is an option
(`config.eval.flip_shift`) for comparing with that code, not a correction that
maps trained here need.

Networks trained by that code (imported with `posejax.import_torch`) put their
peaks on its grid; `HeatmapCodec(grid='official')` reads and renders maps on
it:

    x_heatmap = x_input / s                  (grid='official')

(s - 1) / 2 input pixels (1.5 at stride 4) from the centred grid. Only the
network's heatmap-to-crop relation changes: the crop itself stays posejax's,
and its inverse maps the keypoints back to the image. Decoding an official
network on the centred grid would move every keypoint 1.5 input pixels right
and down; with grid='official', flip test needs `eval.flip_shift` as in the
official code (its one-pixel shift leaves 0.25 heatmap pixel of the 0.75 it
corrects).

UDP (Huang et al., CVPR 2020) measures both the input and the heatmap in
pixel spacings, with the crop to match (`input.crop='udp'`,
posejax/geometry.py): heatmap pixel 0 and the last sit on input pixel 0 and
the last,

    x_heatmap = x_input * (W_heatmap - 1) / (W_input - 1)      (grid='udp')

so that, as on the centred grid, a mirrored heatmap is exactly the heatmap
of the mirrored input; its targets are rendered at the exact sub-pixel
position and decoded with `refine='dark'` (`config_lib.udp`).

Everything here is pure jnp and runs inside the jitted train/predict steps: the
host ships coordinates, never maps.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from posejax import losses


GRIDS = ('centred', 'official', 'udp')
REFINES = ('quarter', 'official', 'dark')


def _grid(stride: int, grid: str, heatmap_size=None):
  """(input units per heatmap pixel, input position of heatmap pixel 0)."""
  if grid not in GRIDS:
    raise ValueError(f'codec.grid must be one of {GRIDS}, got {grid!r}.')
  if grid == 'udp':
    # Pixel spacings: heatmap pixel 0 and the last sit on input pixel 0 and
    # the last, per axis (x, y).
    if heatmap_size is None:
      raise ValueError("grid='udp' needs the heatmap size.")
    h, w = heatmap_size
    return (jnp.asarray([(w * stride - 1) / max(w - 1, 1),
                         (h * stride - 1) / max(h - 1, 1)], jnp.float32), 0.0)
  return stride, ((stride - 1) / 2 if grid == 'centred' else 0.0)


def input_to_heatmap(xy: jax.Array, stride: int, grid: str = 'centred',
                     heatmap_size=None) -> jax.Array:
  """Input pixels -> heatmap pixels (`heatmap_size` (H, W) for 'udp')."""
  scale, offset = _grid(stride, grid, heatmap_size)
  return (xy - offset) / scale


def heatmap_to_input(xy: jax.Array, stride: int, grid: str = 'centred',
                     heatmap_size=None) -> jax.Array:
  scale, offset = _grid(stride, grid, heatmap_size)
  return xy * scale + offset


def _on_map(keypoints, visibility, heatmap_size, stride, grid):
  """Keypoints in heatmap pixels (x, y) and their target weights (..., K).

  A keypoint gets weight 0 when it is not labelled or its centre falls off
  the map (its peak could not be decoded).
  """
  height, width = heatmap_size
  centre = input_to_heatmap(keypoints.astype(jnp.float32), stride, grid,
                            heatmap_size)
  cx, cy = centre[..., 0], centre[..., 1]
  on_map = (cx >= -0.5) & (cx < width - 0.5) & (cy >= -0.5) & (cy < height - 0.5)
  return cx, cy, ((visibility > 0) & on_map).astype(jnp.float32)


def render_heatmaps(
    keypoints: jax.Array,
    visibility: jax.Array,
    heatmap_size: tuple[int, int],
    stride: int,
    sigma: float,
    grid: str = 'centred',
) -> tuple[jax.Array, jax.Array]:
  """Renders one unnormalised Gaussian (peak 1) per keypoint.

  Args:
    keypoints: (..., K, 2) float, input pixels.
    visibility: (..., K) int, COCO convention (0 = not labelled).
    heatmap_size: (height, width) of the maps.
    stride: input pixels per heatmap pixel.
    sigma: Gaussian standard deviation in heatmap pixels.
    grid: 'centred' (posejax), 'official' or 'udp' (see the module docstring).

  Returns:
    heatmaps (..., H, W, K) float32 and target weights (..., K) float32. A joint
    gets weight 0 when it is not labelled or its centre falls off the map (its
    peak could not be decoded); its map is then all zeros.
  """
  height, width = heatmap_size
  cx, cy, weight = _on_map(keypoints, visibility, heatmap_size, stride, grid)
  # The Gaussian is separable: two 1-D profiles and an outer product are far
  # cheaper than evaluating exp on the full H x W grid per joint.
  xs = jnp.arange(width, dtype=jnp.float32)
  ys = jnp.arange(height, dtype=jnp.float32)
  gx = jnp.exp(-((xs - cx[..., None]) ** 2) / (2 * sigma**2))  # (..., K, W)
  gy = jnp.exp(-((ys - cy[..., None]) ** 2) / (2 * sigma**2))  # (..., K, H)
  gy = gy * weight[..., None]
  heatmaps = jnp.einsum('...kh,...kw->...hwk', gy, gx)
  return heatmaps, weight


def decode_heatmaps(
    heatmaps: jax.Array, stride: int, refine: str = 'quarter',
    sigma: float = 2.0, grid: str = 'centred') -> tuple[jax.Array, jax.Array]:
  """Argmax with sub-pixel refinement.

  Args:
    heatmaps: (..., H, W, K).
    stride: input pixels per heatmap pixel.
    refine: 'quarter', a quarter-pixel step toward the higher neighbour on
      each axis that has both neighbours; 'official', the post-processing of
      the official HRNet and SimpleBaselines code exactly (`get_max_preds`,
      `get_final_preds`): a map whose maximum is not positive puts its joint
      at heatmap pixel (0, 0), and the quarter step is taken on both axes
      together, only where 1 < x < W-1 and 1 < y < H-1; or 'dark', see
      `refine_dark`.
    sigma: target Gaussian's sigma, used by 'dark'.
    grid: 'centred' (posejax), 'official' or 'udp' (see the module docstring).

  Returns:
    keypoints (..., K, 2) float32 in input pixels, and scores (..., K), the
    peak value of each map.
  """
  heatmaps = heatmaps.astype(jnp.float32)
  *batch, height, width, k = heatmaps.shape
  flat = heatmaps.reshape(*batch, height * width, k)
  index = jnp.argmax(flat, axis=-2)  # (..., K)
  score = jnp.max(flat, axis=-2)
  x = index % width
  y = index // width

  def value_at(xx, yy):
    flat_index = jnp.clip(yy, 0, height - 1) * width + jnp.clip(xx, 0, width - 1)
    return jnp.take_along_axis(flat, flat_index[..., None, :], axis=-2)[..., 0, :]

  if refine == 'dark':
    xy = refine_dark(heatmaps, jnp.stack([x, y], -1).astype(jnp.float32), sigma)
    return heatmap_to_input(xy, stride, grid, (height, width)), score
  if refine not in REFINES:
    raise ValueError(f'codec.refine must be one of {REFINES}, got {refine!r}.')
  if refine == 'official':
    x = jnp.where(score > 0, x, 0)
    y = jnp.where(score > 0, y, 0)
    dx = value_at(x + 1, y) - value_at(x - 1, y)
    dy = value_at(x, y + 1) - value_at(x, y - 1)
    inside = (x > 1) & (x < width - 1) & (y > 1) & (y < height - 1)
    xy = jnp.stack([x + jnp.where(inside, 0.25 * jnp.sign(dx), 0.0),
                    y + jnp.where(inside, 0.25 * jnp.sign(dy), 0.0)], axis=-1)
    return heatmap_to_input(xy.astype(jnp.float32), stride, grid,
                            (height, width)), score
  dx = value_at(x + 1, y) - value_at(x - 1, y)
  dy = value_at(x, y + 1) - value_at(x, y - 1)
  # Only step where both neighbours exist; on the border the difference is
  # against the peak itself and says nothing about the sub-pixel position.
  dx = jnp.where((x > 0) & (x < width - 1), dx, 0.0)
  dy = jnp.where((y > 0) & (y < height - 1), dy, 0.0)
  xy = jnp.stack([x + 0.25 * jnp.sign(dx), y + 0.25 * jnp.sign(dy)], axis=-1)
  return heatmap_to_input(xy.astype(jnp.float32), stride, grid,
                          (height, width)), score


def refine_dark(heatmaps: jax.Array, keypoints_hm: jax.Array,
                sigma: float) -> jax.Array:
  """Sub-pixel refinement by a Taylor expansion of the log-heatmap (DARK).

  Zhang et al., "Distribution-Aware Coordinate Representation for Human Pose
  Estimation", CVPR 2020: smooth the map with the target's Gaussian, take its
  log (a quadratic near a Gaussian peak) and move the integer argmax by
  -H^-1 g, the Newton step to the quadratic's maximum.

  Args:
    heatmaps: (..., H, W, K).
    keypoints_hm: (..., K, 2) integer argmax positions in heatmap pixels.
    sigma: the Gaussian's standard deviation in heatmap pixels.

  Returns:
    Refined (..., K, 2) positions in heatmap pixels.
  """
  *batch, height, width, k = heatmaps.shape
  radius = int(np.ceil(3 * sigma))
  taps = np.exp(-np.arange(-radius, radius + 1) ** 2 / (2 * sigma**2))
  taps = jnp.asarray(taps / taps.sum(), heatmaps.dtype)
  maps = heatmaps.reshape(-1, height, width, k)
  # Separable Gaussian blur, per channel, zero padded.
  maps = jnp.moveaxis(maps, -1, 1).reshape(-1, 1, height, width)
  maps = jax.lax.conv_general_dilated(
      maps, taps.reshape(1, 1, -1, 1), (1, 1), ((radius, radius), (0, 0)))
  maps = jax.lax.conv_general_dilated(
      maps, taps.reshape(1, 1, 1, -1), (1, 1), ((0, 0), (radius, radius)))
  maps = jnp.moveaxis(maps.reshape(-1, k, height, width), 1, -1)
  log = jnp.log(jnp.maximum(maps, 1e-10)).reshape(*batch, height * width, k)

  x = keypoints_hm[..., 0].astype(jnp.int32)
  y = keypoints_hm[..., 1].astype(jnp.int32)

  def at(dx, dy):
    index = jnp.clip(y + dy, 0, height - 1) * width + jnp.clip(x + dx, 0, width - 1)
    return jnp.take_along_axis(log, index[..., None, :], axis=-2)[..., 0, :]

  centre = at(0, 0)
  gx = 0.5 * (at(1, 0) - at(-1, 0))
  gy = 0.5 * (at(0, 1) - at(0, -1))
  hxx = at(1, 0) - 2 * centre + at(-1, 0)
  hyy = at(0, 1) - 2 * centre + at(0, -1)
  hxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
  det = hxx * hyy - hxy**2
  # A maximum has a negative-definite Hessian; elsewhere keep the argmax.
  ok = ((x > 0) & (x < width - 1) & (y > 0) & (y < height - 1)
        & (hxx < 0) & (det > 1e-12))
  safe_det = jnp.where(ok, det, 1.0)
  dx = -(hyy * gx - hxy * gy) / safe_det
  dy = -(hxx * gy - hxy * gx) / safe_det
  step = jnp.clip(jnp.stack([dx, dy], -1), -1.0, 1.0)
  return keypoints_hm + jnp.where(ok[..., None], step, 0.0)


def flip_heatmaps(heatmaps: jax.Array, flip_index) -> jax.Array:
  """Mirrors (..., H, W, K) maps left-right and swaps left/right channels."""
  return jnp.take(heatmaps[..., ::-1, :], jnp.asarray(flip_index), axis=-1)


def shift_heatmaps_right(heatmaps: jax.Array) -> jax.Array:
  """Moves (..., H, W, K) maps one pixel right; column 0 keeps its values.

  Exactly the official code's `output_flipped[..., 1:] =
  output_flipped[..., :-1]` on flipped-back maps (TEST.SHIFT_HEATMAP).
  """
  return jnp.concatenate([heatmaps[..., :1, :], heatmaps[..., :-1, :]], axis=-2)


def merge_flipped(heatmaps: jax.Array, of_flipped: jax.Array, flip_index,
                  shift: bool = False) -> jax.Array:
  """Flip test: the mean of the maps and those of the mirrored input.

  `of_flipped` are the network's maps for the mirrored crop; they are mirrored
  back with left/right swapped (and with `shift`, moved one pixel right as
  the official code's TEST.SHIFT_HEATMAP does) before the average.
  """
  back = flip_heatmaps(of_flipped, flip_index)
  if shift:
    back = shift_heatmaps_right(back)
  return 0.5 * (heatmaps + back)


def flip_keypoints(keypoints, visibility, width: int, flip_index):
  """Mirrors keypoints in an image of `width` pixels and swaps pairs."""
  flip_index = np.asarray(flip_index)
  x = (width - 1) - keypoints[..., 0]
  flipped = jnp.stack([x, keypoints[..., 1]], axis=-1)
  return flipped[..., flip_index, :], visibility[..., flip_index]


@dataclasses.dataclass(frozen=True)
class HeatmapCodec:
  """Encodes keypoints into Gaussian heatmaps and decodes them back."""

  input_size: tuple[int, int]  # (height, width) of the network input
  stride: int = 4
  sigma: float = 2.0
  refine: str = 'quarter'  # sub-pixel decoding, one of REFINES
  grid: str = 'centred'  # 'official' for networks trained by the official code

  def __post_init__(self):
    _grid(self.stride, self.grid, (1, 1))  # validates grid
    if self.refine not in REFINES:
      raise ValueError(f'codec.refine must be one of {REFINES}, got {self.refine!r}.')
    h, w = self.input_size
    if h % self.stride or w % self.stride:
      raise ValueError(
          f'input size {self.input_size} is not divisible by the heatmap '
          f'stride {self.stride}; change input.size or codec.stride.')

  @property
  def heatmap_size(self) -> tuple[int, int]:
    return (self.input_size[0] // self.stride, self.input_size[1] // self.stride)

  def encode(self, keypoints, visibility):
    return render_heatmaps(
        keypoints, visibility, self.heatmap_size, self.stride, self.sigma,
        self.grid)

  def decode(self, heatmaps):
    return decode_heatmaps(heatmaps, self.stride, self.refine, self.sigma,
                           self.grid)

  def joint_losses(self, output, targets, weights):
    """(B, K) masked heatmap MSE of one stage (`losses.heatmap_mse_per_joint`)."""
    return losses.heatmap_mse_per_joint(output, targets, weights)

  # The network's output channels per keypoint.
  channels = 1

  def merge_flipped(self, output, of_flipped, flip_index, shift=False):
    return merge_flipped(output, of_flipped, flip_index, shift)

  def maps(self, output):
    """(..., H, W, K) maps to look at: the heatmaps themselves."""
    return output


# ------------------------------------------------------ offset voting

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
  cx, cy, weight = _on_map(keypoints, visibility, heatmap_size, stride, grid)
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
class OffsetVotingCodec:
  """Per keypoint, a disk classifier and an offset field, decoded by voting.

  The network outputs 3K channels: K disk logits, then K x offsets and K y
  offsets (in units of `radius` heatmap pixels). Training: per-pixel binary
  cross-entropy on the disks (averaged over the map) plus `offset_weight`
  times the Huber loss of the offsets inside the disks (averaged over the
  disk), masked by the keypoint weights. Decoding: `vote`, then the grid's
  map back to input pixels; a keypoint's score is its map's highest disk
  probability.
  """

  input_size: tuple[int, int]
  stride: int = 4
  radius: float = 3.0  # heatmap pixels
  offset_weight: float = 1.0
  huber_delta: float = 0.3  # in units of radius
  grid: str = 'centred'

  channels = 3

  def __post_init__(self):
    _grid(self.stride, self.grid, (1, 1))
    h, w = self.input_size
    if h % self.stride or w % self.stride:
      raise ValueError(
          f'input size {self.input_size} is not divisible by the heatmap '
          f'stride {self.stride}; change input.size or codec.stride.')
    if self.radius < 1:
      raise ValueError(f'codec.radius must be >= 1 heatmap pixel, got {self.radius}.')

  @property
  def heatmap_size(self) -> tuple[int, int]:
    return (self.input_size[0] // self.stride, self.input_size[1] // self.stride)

  def encode(self, keypoints, visibility):
    return render_offsets(keypoints, visibility, self.heatmap_size, self.stride,
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
    disks, target_offsets = targets
    logits, offsets = self.split(output)
    classification = jnp.mean(
        optax.sigmoid_binary_cross_entropy(logits, disks), axis=(1, 2))
    huber = optax.huber_loss(offsets, target_offsets, delta=self.huber_delta).sum(-1)
    inside = disks.sum(axis=(1, 2))
    regression = (huber * disks).sum(axis=(1, 2)) / jnp.maximum(inside, 1.0)
    return weights * (classification + self.offset_weight * regression)

  def decode(self, output):
    logits, offsets = self.split(output)
    probabilities = jax.nn.sigmoid(logits)
    xy = vote(probabilities, offsets, self.radius)
    scores = probabilities.max(axis=(-3, -2))
    return heatmap_to_input(xy, self.stride, self.grid, self.heatmap_size), scores

  def flip(self, output, flip_index):
    """The output of the mirrored input: mirrored, pairs swapped, x offsets negated."""
    logits, offsets = self.split(output)
    offsets = offsets[..., ::-1, :, :] * jnp.asarray([-1.0, 1.0])
    offsets = jnp.take(offsets, jnp.asarray(flip_index), axis=-2)
    return self.join(flip_heatmaps(logits, flip_index), offsets)

  def merge_flipped(self, output, of_flipped, flip_index, shift=False):
    if shift:
      raise ValueError('eval.flip_shift is for heatmaps on the official grid.')
    return 0.5 * (output.astype(jnp.float32) + self.flip(of_flipped, flip_index))

  def maps(self, output):
    """(..., H, W, K) maps to look at: the disk probabilities."""
    return jax.nn.sigmoid(self.split(output)[0])


CODECS = ('heatmap', 'offsets')


def codec_from_config(config) -> HeatmapCodec | OffsetVotingCodec:
  name = config.codec.name
  if name not in CODECS:
    raise ValueError(f'Unknown codec.name {name!r}; known: {list(CODECS)}.')
  grid, crop = config.codec.get('grid', 'centred'), config.input.get('crop', 'centred')
  if (grid == 'udp') != (crop == 'udp'):
    raise ValueError(
        f"codec.grid={grid!r} with input.crop={crop!r}: UDP's heatmap grid and "
        "crop go together (both 'udp', e.g. the `udp` config variant), or "
        'neither.')
  if name == 'offsets':
    return OffsetVotingCodec(
        input_size=tuple(config.input.size), stride=config.codec.stride,
        radius=config.codec.get('radius', 3.0),
        offset_weight=config.codec.get('offset_weight', 1.0), grid=grid)
  return HeatmapCodec(
      input_size=tuple(config.input.size),
      stride=config.codec.stride,
      sigma=config.codec.sigma,
      refine=config.codec.get('refine', 'quarter'),
      grid=config.codec.get('grid', 'centred'))
