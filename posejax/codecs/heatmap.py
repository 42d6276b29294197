"""Gaussian heatmaps: grids, rendering, decoding (quarter, official, DARK), flips.

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

The codec (`HeatmapCodec`, codec.name='heatmap') scores each stage with the
masked heatmap MSE of `posejax.losses`; the grids and flips here also serve
the offset-voting codec (posejax/codecs/offsets.py).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from posejax import losses
from posejax.codecs import base


GRIDS = ('centred', 'official', 'udp')
REFINES = ('quarter', 'official', 'dark')


def check_grid(grid: str) -> str:
  return base.check_choice('codec.grid', grid, GRIDS)


def _grid(stride: int, grid: str, heatmap_size=None):
  """(input units per heatmap pixel, input position of heatmap pixel 0)."""
  check_grid(grid)
  if grid == 'udp':
    # Pixel spacings: heatmap pixel 0 and the last sit on input pixel 0 and
    # the last, per axis (x, y).
    if heatmap_size is None:
      raise ValueError("grid='udp' needs the heatmap size.")
    h, w = heatmap_size
    return (jnp.asarray([(w * stride - 1) / max(w - 1, 1),
                         (h * stride - 1) / max(h - 1, 1)], jnp.float32), 0.0)
  return stride, ((stride - 1) / 2 if grid == 'centred' else 0.0)


def heatmap_spacing(stride: int, grid: str = 'centred', heatmap_size=None) -> float:
  """Input pixels between neighbouring heatmap pixels (the larger axis's)."""
  return float(np.max(_grid(stride, grid, heatmap_size)[0]))


def input_to_heatmap(xy: jax.Array, stride: int, grid: str = 'centred',
                     heatmap_size=None) -> jax.Array:
  """Input pixels -> heatmap pixels (`heatmap_size` (H, W) for 'udp')."""
  scale, offset = _grid(stride, grid, heatmap_size)
  return (xy - offset) / scale


def heatmap_to_input(xy: jax.Array, stride: int, grid: str = 'centred',
                     heatmap_size=None) -> jax.Array:
  scale, offset = _grid(stride, grid, heatmap_size)
  return xy * scale + offset


def kernel_sigma(kernel_size: int) -> float:
  """The sigma OpenCV gives a Gaussian blur of `kernel_size` with sigma 0.

  CPN's and MSPN's reference code render targets by blurring a one-pixel
  peak with `cv2.GaussianBlur(maps, (k, k), 0)`, so their published kernels
  (15, 11, 9, 7, 5) are these sigmas (2.6, 2.0, 1.7, 1.4, 1.1 map pixels).
  """
  return 0.3 * ((kernel_size - 1) * 0.5 - 1) + 0.8


def keypoints_on_map(keypoints, visibility, heatmap_size, stride, grid):
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


def render_max_over_people(keypoints, visibility, size, stride: int,
                           sigma: float) -> jax.Array:
  """(B, h, w, K) the maximum over people of their Gaussians (peak 1,
  `sigma` in map pixels, on the centred grid) from every person's (B, P, K, 2)
  keypoints in input pixels: the bottom-up codecs' confidence maps.

  Separable Gaussians (as `render_heatmaps`), their product and the maximum
  over people written elementwise, so that XLA reduces over people in one
  loop instead of holding every person's maps (B, P, h, w, K).
  """
  h, w = size
  cx, cy, weight = keypoints_on_map(keypoints, visibility, size, stride, 'centred')
  gx = jnp.exp(-((jnp.arange(w, dtype=jnp.float32) - cx[..., None]) ** 2)
               / (2 * sigma**2))  # (B, P, K, w)
  gy = jnp.exp(-((jnp.arange(h, dtype=jnp.float32) - cy[..., None]) ** 2)
               / (2 * sigma**2)) * weight[..., None]  # (B, P, K, h)
  return (jnp.moveaxis(gy, 2, 3)[:, :, :, None, :]
          * jnp.moveaxis(gx, 2, 3)[:, :, None, :, :]).max(axis=1)


def kept_pixels(ignore: jax.Array, stride: int) -> jax.Array:
  """(B, h, w) 1 where a map pixel counts in the loss: the (B, H, W) input
  ignore mask (crowds, people without keypoints) averaged over each map
  pixel's stride x stride cell, kept below one half."""
  ignore = ignore.astype(jnp.float32)
  b, h, w = ignore.shape
  ignore = ignore.reshape(b, h // stride, stride, w // stride, stride).mean((2, 4))
  return (ignore < 0.5).astype(jnp.float32)


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
  cx, cy, weight = keypoints_on_map(keypoints, visibility, heatmap_size,
                                    stride, grid)
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
  base.check_choice('codec.refine', refine, REFINES)
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


@dataclasses.dataclass(frozen=True)
class HeatmapCodec(base.Codec):
  """One unnormalised Gaussian (peak 1) per keypoint, masked MSE, argmax."""

  input_size: tuple[int, int]  # (height, width) of the network input
  stride: int = 4
  sigma: float = 2.0
  refine: str = 'quarter'  # sub-pixel decoding, one of REFINES
  grid: str = 'centred'  # 'official' for networks trained by the official code
  # Flip test: the official code's one-pixel shift of the mirrored-back maps
  # (`shift_heatmaps_right`, eval.flip_shift).
  flip_shift: bool = False
  # The sigma of each supervised output's targets, in output order (CPN's
  # pyramid levels, MSPN's coarse-to-fine supervision); () renders `sigma`
  # for every output. `encode` then returns one map per output (each
  # distinct sigma rendered once), and the last, the decoded output's,
  # is at `sigma`.
  stage_sigmas: tuple[float, ...] = ()

  channels = 1

  def __post_init__(self):
    if self.stage_sigmas and self.stage_sigmas[-1] != self.sigma:
      raise ValueError(
          f'codec.stage_sigmas ends with {self.stage_sigmas[-1]}, but the '
          f'decoded (last) output is read with codec.sigma={self.sigma}: make '
          'them equal.')
    if any(s <= 0 for s in (self.sigma, *self.stage_sigmas)):
      raise ValueError(f'codec.sigma and codec.stage_sigmas must be positive, got '
                       f'{self.sigma} and {self.stage_sigmas}.')
    check_grid(self.grid)
    base.check_choice('codec.refine', self.refine, REFINES)
    base.check_stride(self.input_size, self.stride)

  @property
  def output_size(self) -> tuple[int, int]:
    return base.check_stride(self.input_size, self.stride)

  def encode(self, keypoints, visibility):
    """Maps (..., h, w, K) at `sigma`, or with `stage_sigmas` a tuple of
    them, one per supervised output; and the weights (..., K)."""
    render = lambda sigma: render_heatmaps(
        keypoints, visibility, self.output_size, self.stride, sigma, self.grid)
    if not self.stage_sigmas:
      return render(self.sigma)
    maps = {sigma: render(sigma)[0] for sigma in dict.fromkeys(self.stage_sigmas)}
    weights = render(self.sigma)[1]
    return tuple(maps[sigma] for sigma in self.stage_sigmas), weights

  def joint_losses(self, output, targets, weights):
    """(B, K) loss of one output against the maps at `sigma` (with
    `stage_sigmas`, the last output's; `stage_losses` pairs each output
    with its own)."""
    self.check_output(output)
    if isinstance(targets, tuple):
      targets = targets[-1]
    return losses.heatmap_mse_per_joint(output, targets, weights)

  def stage_losses(self, outputs, targets, weights):
    if not isinstance(targets, tuple):
      return super().stage_losses(outputs, targets, weights)
    if len(outputs) != len(targets):
      raise ValueError(
          f'codec.stage_sigmas gives {len(targets)} sigmas but the network '
          f'returns {len(outputs)} supervised outputs: one sigma per output.')
    return [self.joint_losses(o, t, weights) for o, t in zip(outputs, targets)]

  def decode(self, output):
    return decode_heatmaps(output, self.stride, self.refine, self.sigma,
                           self.grid)

  def merge_flipped(self, output, of_flipped, flip_index):
    return merge_flipped(output, of_flipped, flip_index, self.flip_shift)

  def maps(self, output):
    return output.astype(jnp.float32)

  def ideal_output(self, targets):
    return targets[-1] if isinstance(targets, tuple) else targets

  @property
  def round_trip_bound(self) -> float:
    # DARK recovers a Gaussian's sub-pixel peak (to about 0.01 heatmap
    # pixel); the quarter step leaves at most a quarter heatmap pixel.
    return (0.1 if self.refine == 'dark' else 0.25) * heatmap_spacing(
        self.stride, self.grid, self.output_size)


def from_config(config, num_keypoints: int) -> HeatmapCodec:
  del num_keypoints  # the same maps for any layout
  return HeatmapCodec(
      input_size=tuple(config.input.size), stride=config.codec.stride,
      sigma=config.codec.sigma, refine=config.codec.refine,
      grid=config.codec.grid, flip_shift=config.eval.flip_shift,
      stage_sigmas=tuple(float(s) for s in config.codec.stage_sigmas or ()))
