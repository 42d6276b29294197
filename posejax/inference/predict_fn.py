"""The jitted prediction: crops -> keypoints, the same for evaluation and images."""

from __future__ import annotations

import jax
import jax.numpy as jnp

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
