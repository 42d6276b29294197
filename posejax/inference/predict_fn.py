"""The jitted prediction, the same for evaluation and images.

Top-down: crops -> keypoints (`make_predict_fn`). Bottom-up: whole images
-> people (`make_bottom_up_predict_fn`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from posejax import distributed
from posejax import sharding
from posejax.models import common

STAGE_MAPS = ('', 'all', 'max')


def make_predict_fn(model, codec, flip_index=None, stage_maps: str = ''):
  """(variables, uint8 images) -> (keypoints (B,K,2) input px, scores (B,K)).

  With `flip_index`, the mirrored crop is predicted too and merged with the
  plain one by the codec (`Codec.merge_flipped`: for heatmaps the mean of the
  maps, mirrored back with left/right swapped, and with the codec's
  `flip_shift` moved one pixel right as the official HRNet code's
  TEST.SHIFT_HEATMAP). With `stage_maps`, a third output holds every
  supervised stage's maps of the plain crop (`Codec.maps`): 'all'
  (B, S, h, w, K), or 'max' over the joints (B, S, h, w), K times smaller,
  which is what pictures of many batches need.

  Build it once and call it many times: each call of this function is a new
  jitted function that traces and compiles anew.
  """
  if stage_maps not in STAGE_MAPS:
    raise ValueError(f'stage_maps must be one of {STAGE_MAPS}, got {stage_maps!r}.')

  def predict(variables, images):
    x = common.model_inputs(model, images)
    stages = model.apply(variables, x, train=False)
    output = stages[-1].astype(jnp.float32)
    if flip_index is not None:
      of_flipped = model.apply(variables, x[:, :, ::-1, :], train=False)[-1]
      output = codec.merge_flipped(output, of_flipped.astype(jnp.float32),
                                   flip_index)
    keypoints, scores = codec.decode(output)
    if not stage_maps:
      return keypoints, scores
    maps = jnp.stack([codec.maps(s.astype(jnp.float32)) for s in stages], 1)
    return keypoints, scores, maps if stage_maps == 'all' else maps.max(-1)
  return jax.jit(predict)


def padded_size(n: int) -> int:
  """`n` rounded up to 8, 12, 16, 24, 32, 48, 64, ... (x 1.5 or x 4/3 each
  step): the refinement compiles for a few sizes only, and pads less than
  to a power of two."""
  n = max(int(n), 1)
  size = 8
  while size < n:
    size = size * 3 // 2 if (size & (size - 1)) == 0 else size // 3 * 4
  return size


# Multi-scale inputs are rounded to this multiple: every network here
# (HRNet's four branches, the hourglass of depth 4) divides it.
SCALE_MULTIPLE = 64


def scaled_size(input_size, scale: float) -> tuple[int, int]:
  """The input size at `scale`, rounded to a multiple of SCALE_MULTIPLE."""
  return tuple(max(SCALE_MULTIPLE, int(round(s * scale / SCALE_MULTIPLE)) * SCALE_MULTIPLE)
               for s in input_size)


def make_bottom_up_predict_fn(model, codec, flip_index=None, mesh=None,
                              scales=(1.0,)):
  """(variables, uint8 images) -> one `grouping.People` per image.

  With several `scales` (multi-scale testing, `eval.test_scales`), the
  network also sees the input resized bilinearly to each scale (sides
  rounded to a multiple of SCALE_MULTIPLE); each scale's maps are combined
  at the decoding resolution, their heatmaps averaged and their tags
  concatenated (`AssociativeEmbeddingCodec.merge_scales`).

  Without `mesh`, images are a host or device array; with it, a global
  batch sharded over `mesh` (`sharding.global_batch`), and the people are
  those of this process's rows.

  For bottom-up codecs (`Codec.bottom_up`, posejax/codecs/embedding.py and
  affinity.py): the network's outputs combined and, with `flip_index`,
  merged with the mirrored image's on device, and decoded into candidates;
  the candidates grouped into people on the host (`codec.group`); then,
  with `codec.refine_missing` (associative embedding), a second device step
  searches every person's missing joints. Keypoints come
  back in input pixels. The two device steps are jitted once here.
  """
  from posejax.codecs import grouping  # pylint: disable=g-import-not-at-top

  scales = tuple(float(s) for s in scales)
  if not scales or min(scales) <= 0:
    raise ValueError(f'eval.test_scales must be positive scales, got {scales}.')

  def at_scale(variables, x, scale):
    if scale != 1.0:
      size = scaled_size(x.shape[1:3], scale)
      x = jax.image.resize(x, (x.shape[0], *size, x.shape[3]), 'bilinear')
    combined = codec.combine(model.apply(variables, x, train=False))
    if flip_index is not None:
      flipped = codec.combine(model.apply(variables, x[:, :, ::-1, :], train=False))
      combined = codec.merge_flipped(combined, flipped, flip_index)
    return combined

  def maps_and_candidates(variables, images):
    x = common.model_inputs(model, images)
    combined = [at_scale(variables, x, s) for s in scales]
    combined = combined[0] if len(combined) == 1 else codec.merge_scales(combined)
    return combined, codec.decode(combined)

  maps_fn = jax.jit(maps_and_candidates)
  refine_fn = jax.jit(codec.refine) if codec.refine_missing else None

  def _refine(people, combined):
    """Every image's missing joints searched in one device step; pairs and
    people padded to powers of two (the same on every process), so that a
    few shapes compile."""
    pairs = [grouping.missing_joints(p) for p in people]
    sizes = (max((len(x) for x in pairs), default=0),
             max((len(p) for p in people), default=0))
    if mesh is not None:
      sizes = tuple(np.max(distributed.allgather_objects(sizes), axis=0))
    if not sizes[0]:
      return people
    n = padded_size(sizes[0])
    means = np.zeros((len(people), padded_size(sizes[1]), combined[1].shape[-1]),
                     np.float32)
    person = np.zeros((len(people), n), np.int32)
    joint = np.zeros((len(people), n), np.int32)
    for i, (p, x) in enumerate(zip(people, pairs)):
      means[i, :len(p)] = p.mean_tags
      person[i, :len(x)], joint[i, :len(x)] = x[:, 0], x[:, 1]
    arrays = {'means': means, 'person': person, 'joint': joint}
    arrays = ({k: jnp.asarray(v) for k, v in arrays.items()} if mesh is None
              else sharding.global_batch(arrays, mesh))
    refined = fetch(refine_fn(combined, arrays['means'], arrays['person'],
                              arrays['joint']))
    return [grouping.fill_missing(p, x, {k: v[i, :len(x)] for k, v in refined.items()})
            for i, (p, x) in enumerate(zip(people, pairs))]

  def fetch(tree):
    if mesh is None:
      return jax.device_get(tree)
    return jax.tree.map(lambda x: sharding.host_rows(x, mesh), tree)

  def predict(variables, images):
    combined, candidates = maps_fn(variables, images)
    candidates = fetch(candidates)
    people = [codec.group({k: v[i] for k, v in candidates.items()})
              for i in range(len(candidates['value']))]
    if codec.refine_missing:
      people = _refine(people, combined)
    map_size = combined[0].shape[1:3]
    return [dataclasses.replace(
        p, keypoints=np.asarray(codec.to_input(p.keypoints, map_size), np.float32))
            for p in people]
  return predict
