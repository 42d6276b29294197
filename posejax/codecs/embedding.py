"""Associative embedding: heatmaps and tags of every person, grouped by tag.

Bottom-up (Newell et al., "Associative Embedding", NeurIPS 2017; Cheng et
al., "HigherHRNet", CVPR 2020): the network sees the whole image and outputs,
per keypoint, a heatmap of every person's joint of that kind and a tag map;
a person's joints share similar tags, different people's differ. Outputs
(posejax/models/):

  first output   (B, H/s, W/s, 2K): K heatmaps, then K tags (s = `stride`)
  later outputs  (B, h, w, K) heatmaps, or (B, h, w, 2K) with tags, at any
                 resolution (HigherHRNet: K heatmaps at 1/2; the stacked
                 hourglass: every stack as the first)

Targets are rendered on device from every person's keypoints (B, P, K, 2)
in input pixels, each output's at its own resolution: one Gaussian per
person and joint on posejax's centred grid (posejax/codecs/heatmap.py),
the maximum over people, and the ignore mask (crowds, people without
keypoints) averaged down to the map. The official code draws its Gaussians
at the integer pixel below each keypoint; here they sit at the exact
position. The loss per output: the masked heatmap MSE, plus, on outputs
with tags, `pull_weight` x pull + `push_weight` x push of the tags at each
person's keypoints (posejax/losses.py; 1e-3 each as published).

Decoding (`decode`) runs on device: the heatmaps of the last
`decode_outputs` outputs are resized to one resolution (the input's with
`project_to_input`, as the official PROJECT2IMAGE; else the first output's)
and averaged, the tags taken from the first output with tags among them;
keypoint NMS by max-pooling (`nms_kernel`), then the `max_people` best
candidates per joint with their tags and their four neighbours' values.
With flip test the heatmaps of the mirrored image are averaged in and its
tags become a second tag dimension. Grouping (posejax/codecs/grouping.py)
is host work.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from posejax import losses
from posejax.codecs import base
from posejax.codecs import grouping
from posejax.codecs import heatmap

# The order joints are grouped in (HigherHRNet's `joint_order` for COCO
# without the centre keypoint): head first, then shoulders, hips, limbs.
COCO_JOINT_ORDER = (0, 1, 2, 3, 4, 5, 6, 11, 12, 7, 8, 9, 10, 13, 14, 15, 16)


def max_pool(maps: jax.Array, kernel: int, axes=(1, 2)) -> jax.Array:
  """The maximum over each pixel's kernel x kernel window on `axes` (H, W;
  (B, H, W, K) by default), stride 1, the border padded with -inf (PyTorch's
  MaxPool2d(kernel, 1, kernel // 2)).

  As two 1-D windows, one per axis: the same values as one 2-D window,
  which XLA:CPU runs several times slower.
  """
  pad = kernel // 2
  for axis in axes:
    window = [1] * maps.ndim
    window[axis] = kernel
    padding = [(0, 0)] * maps.ndim
    padding[axis] = (pad, pad)
    maps = jax.lax.reduce_window(maps, -jnp.inf, jax.lax.max, tuple(window),
                                 (1,) * maps.ndim, tuple(padding))
  return maps


@dataclasses.dataclass(frozen=True)
class AssociativeEmbeddingCodec(base.Codec):
  """Heatmaps and 1-D tags per keypoint; see the module docstring."""

  input_size: tuple[int, int]
  num_keypoints: int
  stride: int = 4  # the first output's (the one with tags)
  sigma: float = 2.0  # heatmap pixels, at every output's resolution
  pull_weight: float = 1e-3
  push_weight: float = 1e-3
  max_people: int = 30
  # Decoding.
  decode_outputs: int = 1
  project_to_input: bool = True
  nms_kernel: int = 5
  detection_threshold: float = 0.1
  tag_threshold: float = 1.0
  adjust: bool = True
  refine_missing: bool = True
  joint_order: tuple[int, ...] | None = None

  channels = 2
  bottom_up = True

  def __post_init__(self):
    base.check_stride(self.input_size, self.stride)
    self.order()  # checks joint_order
    if self.nms_kernel < 1 or self.nms_kernel % 2 == 0:
      raise ValueError(f'codec.nms_kernel must be odd and positive, got '
                       f'{self.nms_kernel}.')
    if self.decode_outputs < 1:
      raise ValueError(f'codec.decode_outputs must be >= 1, got '
                       f'{self.decode_outputs}.')

  @property
  def output_size(self) -> tuple[int, int]:
    return base.check_stride(self.input_size, self.stride)

  def order(self) -> tuple[int, ...]:
    """The order joints are grouped in: `joint_order`, else COCO's for 17
    keypoints, else their index order."""
    num_keypoints = self.num_keypoints
    order = self.joint_order
    if order is None:
      order = (COCO_JOINT_ORDER if num_keypoints == len(COCO_JOINT_ORDER)
               else range(num_keypoints))
    if sorted(order) != list(range(num_keypoints)):
      raise ValueError(f'codec.joint_order must order all {num_keypoints} '
                       f'keypoints once each, got {tuple(order)}.')
    return tuple(order)

  # ------------------------------------------------------------ targets

  def encode(self, keypoints, visibility, ignore_mask=None):
    """Targets: every person's keypoints and the mask, rendered per output
    at its own resolution in `joint_losses`; weights (B, P, K)."""
    if ignore_mask is None:
      ignore_mask = jnp.zeros(keypoints.shape[:1] + tuple(self.input_size),
                              jnp.uint8)
    targets = {'keypoints': keypoints.astype(jnp.float32),
               'visibility': visibility,
               'ignore': ignore_mask}
    return targets, (visibility > 0).astype(jnp.float32)

  def encode_batch(self, batch):
    return self.encode(batch['keypoints'], batch['visibility'],
                       batch['ignore_mask'])

  def _stride_of(self, output) -> int:
    h = output.shape[1]
    if self.input_size[0] % h or self.input_size[1] % output.shape[2]:
      raise ValueError(
          f'A network output of {output.shape[1]}x{output.shape[2]} does not '
          f'divide the input {tuple(self.input_size)}.')
    return self.input_size[0] // h

  def heatmaps_at(self, targets, size, stride):
    """(B, h, w, K) maximum over people of their Gaussians, and the
    (B, h, w) mask of the pixels that count."""
    maps = heatmap.render_max_over_people(
        targets['keypoints'], targets['visibility'], size, stride, self.sigma)
    return maps, heatmap.kept_pixels(targets['ignore'], stride)

  def tag_positions(self, targets, size, stride):
    """(B, P, K) flat pixel index of each keypoint on a map of `size`, and
    whether it is labelled and on the map."""
    h, w = size
    cx, cy, valid = heatmap.keypoints_on_map(
        targets['keypoints'], targets['visibility'], size, stride, 'centred')
    x = jnp.clip(jnp.round(cx), 0, w - 1).astype(jnp.int32)
    y = jnp.clip(jnp.round(cy), 0, h - 1).astype(jnp.int32)
    return y * w + x, valid

  def joint_losses(self, output, targets, weights):
    k = self.num_keypoints
    if output.shape[-1] not in (k, 2 * k):
      raise ValueError(
          f'A bottom-up output has {output.shape[-1]} channels; the '
          f'associative-embedding codec reads {k} heatmaps (and {k} tags).')
    stride = self._stride_of(output)
    size = tuple(output.shape[1:3])
    maps, mask = self.heatmaps_at(targets, size, stride)
    joint = losses.masked_heatmap_mse_per_joint(output[..., :k], maps, mask)
    if output.shape[-1] == 2 * k:
      index, valid = self.tag_positions(targets, size, stride)
      tags = output[..., k:].reshape(output.shape[0], -1, k)  # (B, hw, K)
      gathered = jnp.take_along_axis(
          tags[:, None], index[..., None, :], axis=2)  # (B, P, 1, K)
      gathered = gathered[:, :, 0, :, None]  # (B, P, K, 1)
      pull, push = losses.tag_pull_push(gathered, valid * weights)
      # Spread over the K columns so that their mean is the image's term.
      joint = joint + (self.pull_weight * pull + self.push_weight * push)[:, None]
    return joint

  # ------------------------------------------------------------ decoding

  def combine(self, outputs):
    """(heatmaps (B, H, W, K), tags (B, H, W, K, 1)) of the last
    `decode_outputs` outputs at the decoding resolution: the input's with
    `project_to_input`, else the first output's (`output_size`). Outputs of
    an input scaled for multi-scale testing are resized to it too."""
    k = self.num_keypoints
    used = list(outputs)[-self.decode_outputs:]
    size = (tuple(self.input_size) if self.project_to_input
            else tuple(self.output_size))
    resize = lambda x: (x if tuple(x.shape[1:3]) == size else jax.image.resize(
        x, (x.shape[0], *size, x.shape[-1]), 'bilinear'))
    maps = sum(resize(o[..., :k].astype(jnp.float32)) for o in used) / len(used)
    with_tags = [o for o in used if o.shape[-1] == 2 * k]
    if not with_tags:
      raise ValueError('None of the decoded outputs has tags: raise '
                       'codec.decode_outputs to include the first output.')
    tags = resize(with_tags[0][..., k:].astype(jnp.float32))
    return maps, tags[..., None]

  def merge_flipped(self, output, of_flipped, flip_index):
    """Flip test on combined maps: heatmaps averaged, tags stacked."""
    maps, tags = output
    f_maps, f_tags = of_flipped
    index = jnp.asarray(flip_index)
    f_maps = jnp.take(f_maps[:, :, ::-1], index, axis=3)
    f_tags = jnp.take(f_tags[:, :, ::-1], index, axis=3)
    return 0.5 * (maps + f_maps), jnp.concatenate([tags, f_tags], -1)

  def merge_scales(self, combined):
    """Multi-scale testing: the combined maps of several input scales (each
    already at the decoding resolution) as one: heatmaps averaged, tags
    concatenated, as the official HigherHRNet test aggregates them."""
    maps = sum(m for m, _ in combined) / len(combined)
    return maps, jnp.concatenate([t for _, t in combined], -1)

  def decode(self, output):
    """Candidates per joint from combined maps (`combine`), on device.

    Returns a dict of (B, K, N) arrays, N = max_people: 'x', 'y' (int32 map
    pixels), 'value' (heatmap after NMS), 'tags' (B, K, N, L), and
    'neighbours' (B, K, N, 4), the map at (x+1, y), (x-1, y), (x, y+1),
    (x, y-1), clamped to the map, for the quarter-pixel adjustment.
    """
    maps, tags = output
    b, h, w, k = maps.shape
    n = min(self.max_people, h * w)
    # One transpose, to (B, K, H, W) for the NMS and top_k's last axis
    # (the fastest arrangement on XLA:CPU); the rest is gathered from the
    # (B, H, W, K) maps.
    per_joint = jnp.moveaxis(maps, 3, 1)
    pooled = max_pool(per_joint, self.nms_kernel, axes=(2, 3))
    peaks = jnp.where(pooled == per_joint, per_joint, 0.0).reshape(b, k, h * w)
    value, index = jax.lax.top_k(peaks, n)  # (B, K, N)
    x, y = index % w, index // w
    flat_maps = maps.reshape(b, h * w * k)
    joint = jnp.arange(k)[None, :, None]

    def at(dx, dy):
      xx, yy = jnp.clip(x + dx, 0, w - 1), jnp.clip(y + dy, 0, h - 1)
      return jnp.take_along_axis(
          flat_maps, ((yy * w + xx) * k + joint).reshape(b, -1), axis=1
      ).reshape(b, k, n)

    neighbours = jnp.stack([at(1, 0), at(-1, 0), at(0, 1), at(0, -1)], -1)
    flat_tags = tags.reshape(b, h * w * k, tags.shape[-1])
    picked_tags = jnp.take_along_axis(
        flat_tags, (index * k + joint).reshape(b, -1, 1), axis=1).reshape(b, k, n, -1)
    return {'x': x.astype(jnp.int32), 'y': y.astype(jnp.int32), 'value': value,
            'tags': picked_tags, 'neighbours': neighbours}

  def group(self, candidates):
    """One image's people (host) from its `decode` candidates (numpy, the
    batch axis removed), before the refinement."""
    return grouping.group(candidates, self.order(), self.detection_threshold,
                          self.tag_threshold, self.max_people, self.adjust)

  def refine(self, output, mean_tags, person, joint):
    """The refinement's search for missing joints, on device.

    `output` the combined maps (`combine`, `merge_flipped`); `mean_tags`
    (B, P, L) each person's mean tag; `person`, `joint` (B, N) int the
    (person, joint) pairs to search (padding pairs are searched too and
    ignored by the caller). For each pair: the pixel of the largest
    heatmap - round(distance of its tag to the person's) on the joint's
    maps, its heatmap value and its four neighbours (as `decode`), each
    (B, N). Only the pairs asked for are computed: the official code
    searches every joint of every person and keeps the missing ones.
    """
    maps, tags = output
    b, h, w, k = maps.shape
    # Whole rows of the (B, K, H*W) layout: the fastest gather on XLA:CPU.
    per_joint = jnp.moveaxis(maps, 3, 1).reshape(b, k, h * w)
    per_joint_tags = jnp.moveaxis(tags, 3, 1).reshape(b, k, h * w, -1)
    joint_maps = jnp.take_along_axis(per_joint, joint[..., None], axis=1)  # (B, N, hw)
    joint_tags = jnp.take_along_axis(per_joint_tags, joint[..., None, None],
                                     axis=1)  # (B, N, hw, L)
    mean = jnp.take_along_axis(mean_tags, person[..., None], axis=1)  # (B, N, L)
    distance = jnp.sqrt(((joint_tags - mean[:, :, None]) ** 2).sum(-1))
    index = jnp.argmax(joint_maps - jnp.round(distance), axis=-1)  # (B, N)
    x, y = index % w, index // w

    def at(dx, dy):
      xx, yy = jnp.clip(x + dx, 0, w - 1), jnp.clip(y + dy, 0, h - 1)
      return jnp.take_along_axis(joint_maps, (yy * w + xx)[..., None], axis=-1)[..., 0]

    return {'x': x.astype(jnp.int32), 'y': y.astype(jnp.int32), 'value': at(0, 0),
            'neighbours': jnp.stack([at(1, 0), at(-1, 0), at(0, 1), at(0, -1)], -1)}

  def to_input(self, xy, map_size):
    """Decoding-map pixels -> input pixels."""
    if tuple(map_size) == tuple(self.input_size):
      return xy
    return heatmap.heatmap_to_input(xy, self.input_size[0] // map_size[0])

  def maps(self, output):
    """The heatmaps of an output (without its tags)."""
    return output[..., :self.num_keypoints].astype(jnp.float32)

  def tag_maps(self, output):
    """(B, h, w, K) tag maps of an output with tags, for pictures."""
    return output[..., self.num_keypoints:].astype(jnp.float32)

  def ideal_output(self, targets):
    """At `stride`: the targets' heatmaps and, near each person's joints,
    their index as the tag (a perfect embedding: one value per person)."""
    size, s = self.output_size, self.stride
    maps, _ = self.heatmaps_at(targets, size, s)
    per_person, _ = heatmap.render_heatmaps(
        targets['keypoints'], targets['visibility'], size, s, self.sigma)
    owner = jnp.argmax(per_person, axis=1).astype(jnp.float32)  # (B, h, w, K)
    return jnp.concatenate([maps, owner], -1)

  @property
  def round_trip_bound(self) -> float:
    # On the output grid the quarter step leaves a quarter output pixel. A
    # bilinear enlargement (`project_to_input`) is piecewise linear, so its
    # maximum sits on an output pixel's centre: half an output pixel, plus
    # the quarter input pixel of the step.
    if self.project_to_input:
      return 0.5 * self.stride + 0.25
    return 0.25 * self.stride


def from_config(config, num_keypoints: int) -> AssociativeEmbeddingCodec:
  c = config.codec
  return AssociativeEmbeddingCodec(
      input_size=tuple(config.input.size), num_keypoints=num_keypoints,
      joint_order=None if c.joint_order is None else tuple(c.joint_order),
      stride=c.stride, sigma=c.sigma, pull_weight=c.pull_weight,
      push_weight=c.push_weight, max_people=config.input.max_people,
      decode_outputs=c.decode_outputs, project_to_input=c.project_to_input,
      nms_kernel=c.nms_kernel, detection_threshold=c.detection_threshold,
      tag_threshold=c.tag_threshold, adjust=c.adjust,
      refine_missing=c.refine_missing)
