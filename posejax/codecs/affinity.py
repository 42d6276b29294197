"""Part affinity fields: confidence maps and limb vectors, assembled into people.

Bottom-up (Cao et al., "Realtime Multi-Person 2D Pose Estimation using Part
Affinity Fields", CVPR 2017; OpenPose): per part a confidence map of every
person's part of that kind, and per limb (a pair of parts) a 2-D field
holding, near each person's limb, the unit vector from its first part to
its second. Every supervised output (posejax/models/openpose.py, one per
stage) is (B, H/s, W/s, J + 1 + 2L): J part maps, the background (1 - their
maximum), then the PAF channels in `Layout.paf_channels` order.

Parts. With COCO's 17 keypoints the parts are OpenPose's COCO-18 (`COCO18`:
nose, neck, right arm, left arm, right leg, left leg, eyes, ears), the neck
the midpoint of the shoulders (labelled when both are), and the 19 limbs
and channel order of the CMU model, so that its weights import. Any other
keypoint set names its limbs (`codec.limbs`, pairs of keypoint indices)
and its parts are its keypoints. Decoded people come back in the dataset's
keypoints (the neck dropped).

Targets (on device, per output at its resolution, the centred grid of
posejax/codecs/heatmap.py): the maximum over people of one Gaussian per part
(`sigma` map pixels: the CMU training's 7 input pixels at stride 8); the
PAF of a limb at pixel p is the mean over the people whose limb covers p of
their unit vector v, a limb covering p when 0 <= v.(p - a) <= |b - a| and
|v x (p - a)| <= `limb_width` (map pixels; 1 in the CMU training); the
ignore mask as for associative embedding. The loss of each output: the
masked squared error of every channel, averaged over pixels (the CMU
training sums it, a constant factor); `joint_losses` returns it per
channel, (B, J + 1 + 2L).

Decoding (`decode`, on device; the constants of the PyTorch port's
`body.py`): the last output's maps resized (bicubic) to the input (or kept
at the output resolution without `project_to_input`); each part's map
smoothed by a Gaussian of `peak_sigma` pixels, peaks where the smoothed map
is at least its four neighbours and above `peak_threshold`, the
`max_peaks` highest kept per part in raster order with their unsmoothed
values; for every limb and every pair of peaks of its two parts, the PAF
sampled at `samples` points on the segment (rounded to pixels) and
projected on its direction: the pair's score is the mean projection plus
min(0.5 H / length - 1, 0) (H the map's height), and it is a candidate when
more than `sample_fraction` of the projections exceed `paf_threshold` and
the score is positive. Assembly into people is host work
(posejax/codecs/assembly.py).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from posejax.codecs import assembly
from posejax.codecs import base
from posejax.codecs import heatmap


@dataclasses.dataclass(frozen=True)
class Layout:
  """The parts and limbs a PAF network predicts.

  parts: for each part, the dataset keypoint it is, or -1 for the midpoint
    of the two keypoints of `midpoint`.
  limbs: (part, part) pairs.
  paf_channels: each limb's (x, y) channels among the 2L PAF channels.
  closing_limbs: how many of the last limbs only join parts of people
    already started (OpenPose's ear-shoulder links), never start one.
  """

  parts: tuple[int, ...]
  limbs: tuple[tuple[int, int], ...]
  paf_channels: tuple[tuple[int, int], ...]
  midpoint: tuple[int, int] | None = None
  closing_limbs: int = 0

  @property
  def num_parts(self) -> int:
    return len(self.parts)

  def check(self, num_keypoints: int) -> None:
    for a, b in self.limbs:
      if not (0 <= a < self.num_parts and 0 <= b < self.num_parts) or a == b:
        raise ValueError(
            f'codec.limbs: the limb ({a}, {b}) must join two different '
            f'keypoints among 0..{self.num_parts - 1}.')
    if max(self.parts) >= num_keypoints:
      raise ValueError(f'The PAF layout reads keypoint {max(self.parts)} of a '
                       f'dataset with {num_keypoints}.')
    channels = sorted(c for pair in self.paf_channels for c in pair)
    if channels != list(range(2 * len(self.limbs))):
      raise ValueError('paf_channels must use each of the 2L PAF channels once.')


# OpenPose's COCO-18 parts from COCO's 17 keypoints: nose, neck (the
# shoulders' midpoint), right shoulder, elbow, wrist, left shoulder, elbow,
# wrist, right hip, knee, ankle, left hip, knee, ankle, right eye, left
# eye, right ear, left ear.
COCO18 = Layout(
    parts=(0, -1, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3),
    midpoint=(5, 6),
    # The port's limbSeq (1-based there) and mapIdx (minus the 19 maps).
    limbs=((1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9),
           (9, 10), (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16),
           (0, 15), (15, 17), (2, 16), (5, 17)),
    paf_channels=((12, 13), (20, 21), (14, 15), (16, 17), (22, 23), (24, 25),
                  (0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11), (28, 29),
                  (30, 31), (34, 35), (32, 33), (36, 37), (18, 19), (26, 27)),
    closing_limbs=2)


def skeleton_layout(num_keypoints: int, limbs) -> Layout:
  """Parts = the keypoints, PAF channels in limb order."""
  limbs = tuple((int(a), int(b)) for a, b in limbs)
  return Layout(parts=tuple(range(num_keypoints)), limbs=limbs,
                paf_channels=tuple((2 * i, 2 * i + 1) for i in range(len(limbs))))


def gaussian_smooth(maps: jax.Array, sigma: float, axes=(1, 2)) -> jax.Array:
  """scipy.ndimage.gaussian_filter(sigma) of every map along `axes`:
  the kernel truncated at 4 sigma, the border reflected (d c b a | a b c d),
  as shifted sums, which XLA fuses."""
  radius = int(4.0 * sigma + 0.5)
  taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
  taps = (taps / taps.sum()).astype(np.float32)
  for axis in axes:
    padding = [(0, 0)] * maps.ndim
    padding[axis] = (radius, radius)
    padded = jnp.pad(maps, padding, mode='symmetric')
    size = maps.shape[axis]
    maps = sum(float(t) * jax.lax.slice_in_dim(padded, i, i + size, axis=axis)
               for i, t in enumerate(taps))
  return maps


@dataclasses.dataclass(frozen=True)
class PartAffinityCodec(base.Codec):
  """Confidence maps and part affinity fields; see the module docstring."""

  input_size: tuple[int, int]
  num_keypoints: int  # the dataset's
  # None: COCO18 for 17 keypoints; else (keypoint, keypoint) pairs.
  limbs: tuple[tuple[int, int], ...] | None = None
  stride: int = 8
  sigma: float = 0.875  # map pixels
  limb_width: float = 1.0  # map pixels
  # Decoding (the port's thre1, thre2, mid_num; the rules of its assembly).
  decode_outputs: int = 1
  project_to_input: bool = True
  peak_sigma: float = 3.0  # decoding-map pixels
  peak_threshold: float = 0.1
  max_peaks: int = 32
  paf_threshold: float = 0.05
  samples: int = 10
  sample_fraction: float = 0.8
  min_parts: int = 4
  min_mean_score: float = 0.4

  bottom_up = True
  refine_missing = False

  def __post_init__(self):
    base.check_stride(self.input_size, self.stride)
    self.layout.check(self.num_keypoints)
    for name in ('sigma', 'limb_width', 'peak_sigma'):
      if getattr(self, name) <= 0:
        raise ValueError(f'codec.{name} must be positive, got {getattr(self, name)}.')
    for name, least in (('samples', 2), ('max_peaks', 1), ('decode_outputs', 1)):
      if getattr(self, name) < least:
        raise ValueError(f'codec.{name} must be >= {least}, got {getattr(self, name)}.')

  @property
  def layout(self) -> Layout:
    if self.limbs is not None:
      return skeleton_layout(self.num_keypoints, self.limbs)
    if self.num_keypoints == 17:
      return COCO18
    raise ValueError(
        f'The PAF codec knows the limbs of COCO\'s 17 keypoints; for '
        f'{self.num_keypoints} keypoints set codec.limbs to pairs of keypoint '
        'indices (e.g. the dataset\'s skeleton).')

  @property
  def output_size(self) -> tuple[int, int]:
    return base.check_stride(self.input_size, self.stride)

  def output_channels(self, num_keypoints: int) -> int:
    layout = self.layout
    return layout.num_parts + 1 + 2 * len(layout.limbs)

  # ------------------------------------------------------------ targets

  def parts_of(self, keypoints, visibility):
    """(..., J, 2) parts and (..., J) visibility from dataset keypoints."""
    layout = self.layout
    index = np.maximum(np.asarray(layout.parts), 0)
    parts = jnp.take(keypoints, index, axis=-2)
    vis = jnp.take(visibility, index, axis=-1)
    if layout.midpoint is not None:
      a, b = layout.midpoint
      mid = 0.5 * (keypoints[..., a, :] + keypoints[..., b, :])
      mid_vis = jnp.where((visibility[..., a] > 0) & (visibility[..., b] > 0),
                          jnp.minimum(visibility[..., a], visibility[..., b]), 0)
      is_mid = np.asarray(layout.parts) < 0
      parts = jnp.where(is_mid[:, None], mid[..., None, :], parts)
      vis = jnp.where(is_mid, mid_vis[..., None], vis)
    return parts, vis

  def encode(self, keypoints, visibility, ignore_mask=None):
    """Every person's parts and the ignore mask, rendered per output in
    `joint_losses`; weights (B, P, K)."""
    if ignore_mask is None:
      ignore_mask = jnp.zeros(keypoints.shape[:1] + tuple(self.input_size),
                              jnp.uint8)
    parts, vis = self.parts_of(keypoints.astype(jnp.float32), visibility)
    targets = {'parts': parts, 'visibility': vis, 'ignore': ignore_mask}
    return targets, (visibility > 0).astype(jnp.float32)

  def encode_batch(self, batch):
    return self.encode(batch['keypoints'], batch['visibility'],
                       batch['ignore_mask'])

  def render_fields(self, parts, visibility, size, stride):
    """(B, h, w, 2L) the PAF targets, in `paf_channels` order."""
    layout = self.layout
    h, w = size
    cx, cy, weight = heatmap.keypoints_on_map(parts, visibility, size, stride,
                                              'centred')  # (B, P, J)
    a_idx = np.asarray([a for a, _ in layout.limbs])
    b_idx = np.asarray([b for _, b in layout.limbs])
    ax, ay = cx[..., a_idx], cy[..., a_idx]  # (B, P, L)
    dx, dy = cx[..., b_idx] - ax, cy[..., b_idx] - ay
    length = jnp.sqrt(dx**2 + dy**2)
    valid = weight[..., a_idx] * weight[..., b_idx] * (length > 1e-6)
    ux, uy = dx / jnp.maximum(length, 1e-6), dy / jnp.maximum(length, 1e-6)
    expand = lambda v: v[..., None, None]  # (B, P, L, 1, 1)
    px = jnp.arange(w, dtype=jnp.float32)[None, :] - expand(ax)
    py = jnp.arange(h, dtype=jnp.float32)[:, None] - expand(ay)
    along = px * expand(ux) + py * expand(uy)
    across = jnp.abs(px * expand(uy) - py * expand(ux))
    inside = ((along >= 0) & (along <= expand(length))
              & (across <= self.limb_width)).astype(jnp.float32) * expand(valid)
    count = jnp.maximum(inside.sum(1), 1.0)  # (B, L, h, w)
    vx = (inside * expand(ux)).sum(1) / count
    vy = (inside * expand(uy)).sum(1) / count
    fields = jnp.stack([vx, vy], -1)  # (B, L, h, w, 2)
    fields = jnp.moveaxis(fields, 1, 3).reshape(*fields.shape[:1], h, w, -1)
    # Limb l's (x, y) at 2l, 2l + 1 -> its paf_channels.
    order = np.argsort(np.asarray(layout.paf_channels).reshape(-1))
    return fields[..., order]

  def targets_at(self, targets, size, stride):
    """(B, h, w, J + 1 + 2L) the output a perfect network gives at `size`,
    and the (B, h, w) pixels that count."""
    maps = heatmap.render_max_over_people(
        targets['parts'], targets['visibility'], size, stride, self.sigma)
    background = 1.0 - maps.max(-1, keepdims=True)
    fields = self.render_fields(targets['parts'], targets['visibility'], size, stride)
    return (jnp.concatenate([maps, background, fields], -1),
            heatmap.kept_pixels(targets['ignore'], stride))

  def _stride_of(self, output) -> int:
    if (self.input_size[0] % output.shape[1] or self.input_size[1] % output.shape[2]
        or self.input_size[0] // output.shape[1] != self.input_size[1] // output.shape[2]):
      raise ValueError(
          f'A network output of {output.shape[1]}x{output.shape[2]} does not '
          f'divide the input {tuple(self.input_size)}.')
    return self.input_size[0] // output.shape[1]

  def joint_losses(self, output, targets, weights):
    del weights  # the visibility of every part is in the targets
    channels = self.output_channels(self.num_keypoints)
    if output.shape[-1] != channels:
      layout = self.layout
      raise ValueError(
          f'A PAF network output has {output.shape[-1]} channels; the codec '
          f'reads {layout.num_parts} part maps, the background and '
          f'{2 * len(layout.limbs)} PAF channels ({channels}): set '
          f'model.num_limbs={len(layout.limbs)}.')
    stride = self._stride_of(output)
    expected, mask = self.targets_at(targets, tuple(output.shape[1:3]), stride)
    diff = (output.astype(jnp.float32) - expected) * mask[..., None]
    return jnp.mean(diff**2, axis=(1, 2))

  # ------------------------------------------------------------ decoding

  def combine(self, outputs):
    """(confidence maps (B, H, W, J + 1), PAFs (B, H, W, 2L)): the last
    `decode_outputs` outputs averaged at the decoding resolution (the
    input's with `project_to_input`, bicubic as the port; else the
    output's)."""
    used = list(outputs)[-self.decode_outputs:]
    size = (tuple(self.input_size) if self.project_to_input
            else tuple(self.output_size))
    resize = lambda x: (x if tuple(x.shape[1:3]) == size else jax.image.resize(
        x, (x.shape[0], *size, x.shape[-1]), 'cubic'))
    maps = sum(resize(o.astype(jnp.float32)) for o in used) / len(used)
    j = self.layout.num_parts + 1
    return maps[..., :j], maps[..., j:]

  def flip_indices(self, flip_index):
    """(part flip index (J + 1,), limb flip index (L,), whether each limb's
    mirror runs the other way) from the dataset's flip index."""
    layout = self.layout
    flip_index = np.asarray(flip_index)
    parts = np.asarray(layout.parts)
    source = {p: j for j, p in enumerate(layout.parts) if p >= 0}
    part_flip = np.array([j if p < 0 else source[int(flip_index[p])]
                          for j, p in enumerate(parts)] + [len(parts)])
    limbs = {pair: l for l, pair in enumerate(layout.limbs)}
    limb_flip, reverse = [], []
    for a, b in layout.limbs:
      fa, fb = int(part_flip[a]), int(part_flip[b])
      if (fa, fb) in limbs:
        limb_flip.append(limbs[(fa, fb)])
        reverse.append(False)
      elif (fb, fa) in limbs:
        limb_flip.append(limbs[(fb, fa)])
        reverse.append(True)
      else:
        raise ValueError(f'The limb ({a}, {b}) has no mirror among codec.limbs; '
                         'flip test needs the mirror of every limb.')
    return part_flip, np.asarray(limb_flip), np.asarray(reverse)

  def merge_flipped(self, output, of_flipped, flip_index):
    """Flip test: the mirrored image's maps mirrored back, parts and limbs
    swapped, its PAFs' x component negated; both averaged."""
    maps, fields = output
    f_maps, f_fields = of_flipped
    part_flip, limb_flip, reverse = self.flip_indices(flip_index)
    f_maps = jnp.take(f_maps[:, :, ::-1], jnp.asarray(part_flip), axis=3)
    channels = np.asarray(self.layout.paf_channels)  # (L, 2)
    # Limb l of the merged field reads the mirror limb's channels.
    source = channels[limb_flip].reshape(-1)
    sign = np.stack([np.where(reverse, 1.0, -1.0), np.where(reverse, -1.0, 1.0)],
                    -1).reshape(-1).astype(np.float32)
    mirrored = jnp.take(f_fields[:, :, ::-1], jnp.asarray(source), axis=3) * sign
    order = np.argsort(channels.reshape(-1))
    return 0.5 * (maps + f_maps), 0.5 * (fields + mirrored[..., order])

  def merge_scales(self, combined):
    """Multi-scale testing: maps and fields averaged over the scales."""
    n = len(combined)
    return (sum(m for m, _ in combined) / n, sum(f for _, f in combined) / n)

  def peaks(self, maps):
    """The `max_peaks` peaks of each part's map, on device: (B, J, N) 'x',
    'y' int32 (raster order), 'value' (the unsmoothed map there) and
    'valid'."""
    j = self.layout.num_parts
    per_part = jnp.moveaxis(maps[..., :j], 3, 1)  # (B, J, H, W)
    b, _, h, w = per_part.shape
    smooth = gaussian_smooth(per_part, self.peak_sigma, axes=(2, 3))
    # At least its four neighbours, zero outside the map (as the port): the
    # maximum of its 3-pixel windows along each axis, padded with zeros (a
    # pixel above the threshold is positive), two 1-D windows, which XLA:CPU
    # runs faster than shifted copies.
    def window_max(x, axis):
      window, padding = [1] * 4, [(0, 0)] * 4
      window[axis], padding[axis] = 3, (1, 1)
      return jax.lax.reduce_window(x, 0.0, jax.lax.max, tuple(window), (1,) * 4,
                                   tuple(padding))
    peak = ((smooth >= window_max(smooth, 2)) & (smooth >= window_max(smooth, 3))
            & (smooth > self.peak_threshold))
    n = min(self.max_peaks, h * w)
    flat = per_part.reshape(b, j, h * w)
    ranked = jnp.where(peak.reshape(b, j, h * w), smooth.reshape(b, j, h * w), -jnp.inf)
    top, index = jax.lax.top_k(ranked, n)
    valid = top > -jnp.inf
    # Raster order, as the port lists them (np.nonzero).
    index = jnp.sort(jnp.where(valid, index, h * w), axis=-1)
    valid = index < h * w
    index = jnp.minimum(index, h * w - 1)
    value = jnp.take_along_axis(flat, index, axis=-1)
    return {'x': (index % w).astype(jnp.int32), 'y': (index // w).astype(jnp.int32),
            'value': value, 'valid': valid}

  def limb_scores(self, fields, peaks):
    """(B, L, N, N) each pair's score with the length prior, and whether it
    is a candidate, from the PAF line integrals of every limb and pair."""
    layout = self.layout
    b, h, w, _ = fields.shape
    a_idx = np.asarray([a for a, _ in layout.limbs])
    b_idx = np.asarray([c for _, c in layout.limbs])
    xy = jnp.stack([peaks['x'], peaks['y']], -1).astype(jnp.float32)  # (B, J, N, 2)
    start = xy[:, a_idx][:, :, :, None]  # (B, L, N, 1, 2)
    end = xy[:, b_idx][:, :, None]  # (B, L, 1, N, 2)
    vec = end - start
    norm = jnp.maximum(jnp.sqrt((vec**2).sum(-1)), 1e-3)  # (B, L, N, N)
    unit = vec / norm[..., None]
    t = jnp.arange(self.samples, dtype=jnp.float32) / (self.samples - 1)
    points = start[..., None, :] + t[:, None] * vec[..., None, :]  # (B, L, N, N, S, 2)
    px = jnp.clip(jnp.round(points[..., 0]), 0, w - 1).astype(jnp.int32)
    py = jnp.clip(jnp.round(points[..., 1]), 0, h - 1).astype(jnp.int32)
    channels = np.asarray(layout.paf_channels)  # (L, 2)
    flat = fields.reshape(b, h * w * fields.shape[-1])
    pixel = (py * w + px) * fields.shape[-1]
    limb_c = channels[None, :, None, None, None, :]  # (1, L, 1, 1, 1, 2)
    index = (pixel[..., None] + limb_c).reshape(b, -1)
    sampled = jnp.take_along_axis(flat, index, axis=1).reshape(*pixel.shape, 2)
    projection = (sampled * unit[..., None, :]).sum(-1)  # (B, L, N, N, S)
    score = projection.mean(-1) + jnp.minimum(0.5 * h / norm - 1, 0)
    enough = (projection > self.paf_threshold).sum(-1) > self.sample_fraction * self.samples
    valid = peaks['valid'][:, a_idx][:, :, :, None] & peaks['valid'][:, b_idx][:, :, None]
    return score, enough & (score > 0) & valid

  def decode(self, output):
    """Peaks and limb candidates from combined maps (`combine`), on device:
    (B, J, N) 'x', 'y', 'value', 'valid' and (B, L, N, N) 'limb_score',
    'limb_ok'."""
    maps, fields = output
    found = self.peaks(maps)
    score, ok = self.limb_scores(fields, found)
    return {**found, 'limb_score': score, 'limb_ok': ok}

  def group(self, candidates) -> assembly.People:
    """One image's people (host) from its `decode` candidates, in the
    dataset's keypoints on the decoding maps' pixels."""
    layout = self.layout
    found = assembly.assemble(candidates, layout.limbs, layout.closing_limbs,
                              self.min_parts, self.min_mean_score)
    keypoints = np.zeros((len(found), self.num_keypoints, 2), np.float32)
    scores = np.zeros((len(found), self.num_keypoints), np.float32)
    for j, k in enumerate(layout.parts):
      if k >= 0:
        keypoints[:, k] = found.keypoints[:, j]
        scores[:, k] = found.scores[:, j]
    return dataclasses.replace(found, keypoints=keypoints, scores=scores,
                               pixels=np.round(keypoints).astype(np.int32))

  def to_input(self, xy, map_size):
    """Decoding-map pixels -> input pixels."""
    if tuple(map_size) == tuple(self.input_size):
      return xy
    return heatmap.heatmap_to_input(xy, self.input_size[0] // map_size[0])

  def maps(self, output):
    """The dataset keypoints' confidence maps of an output (the neck and
    background left out)."""
    layout = self.layout
    index = [j for j in np.argsort(layout.parts) if layout.parts[j] >= 0]
    return output[..., np.asarray(index)].astype(jnp.float32)

  def field_maps(self, output):
    """(B, h, w, L, 2) each limb's PAF (x, y) of an output, for pictures."""
    j = self.layout.num_parts + 1
    channels = np.asarray(self.layout.paf_channels)
    return output[..., j:][..., channels].astype(jnp.float32)

  def ideal_output(self, targets):
    size = self.output_size
    output, _ = self.targets_at(targets, size, self.stride)
    return output

  @property
  def round_trip_bound(self) -> float:
    # Peaks are decoding-map pixels (no sub-pixel step): half an input pixel;
    # the bicubic enlargement of a Gaussian of `sigma` output pixels keeps
    # its maximum within half an output pixel of the keypoint.
    if self.project_to_input:
      return 0.5 * self.stride + 0.5
    return 0.5 * self.stride


def from_config(config, num_keypoints: int) -> PartAffinityCodec:
  c = config.codec
  limbs = c.limbs
  return PartAffinityCodec(
      input_size=tuple(config.input.size), num_keypoints=num_keypoints,
      limbs=None if limbs is None else tuple(tuple(p) for p in limbs),
      stride=c.stride, sigma=c.sigma, limb_width=c.limb_width,
      decode_outputs=c.decode_outputs, project_to_input=c.project_to_input,
      peak_sigma=c.peak_sigma, peak_threshold=c.peak_threshold,
      max_peaks=c.max_peaks, paf_threshold=c.paf_threshold, samples=c.samples,
      sample_fraction=c.sample_fraction, min_parts=c.min_parts,
      min_mean_score=c.min_mean_score)
