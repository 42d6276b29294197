"""Crops -> keypoints: the model, optional flip test and decoding.

Used by evaluation, by the training loop's periodic eval and by notebooks. The
jitted part takes uint8 crops and returns keypoints in input pixels; the
host part maps them back to image pixels with the inverse crop
(`posejax/geometry.py`) and returns them as `Predictions`. No TensorFlow.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from posejax import codecs
from posejax import geometry
from posejax import sharding
from posejax.evaluation.predictions import Predictions
from posejax.models import common


def make_predict_fn(model, codec: codecs.HeatmapCodec, flip_index=None,
                    flip_shift: bool = False, stage_maps: bool = False):
  """(variables, uint8 images) -> (keypoints (B,K,2) input px, scores (B,K)).

  With `flip_index`, the mirrored crop is predicted too and its heatmaps,
  mirrored back with left/right swapped, are averaged with the plain ones.
  `flip_shift` moves the mirrored-back maps one pixel right first, as the
  official HRNet code's TEST.SHIFT_HEATMAP (see `codecs.shift_heatmaps_right`).
  With `stage_maps`, a third output (B, S, h, w) holds every supervised
  stage's maps of the plain crop, maximum over the joints, for pictures.
  """
  def predict(variables, images):
    x = common.model_inputs(model, images)
    stages = model.apply(variables, x, train=False)
    heatmaps = stages[-1].astype(jnp.float32)
    if flip_index is not None:
      of_flipped = model.apply(variables, x[:, :, ::-1, :], train=False)[-1]
      heatmaps = codecs.merge_flipped(heatmaps, of_flipped.astype(jnp.float32),
                                      flip_index, flip_shift)
    keypoints, scores = codec.decode(heatmaps)
    if not stage_maps:
      return keypoints, scores
    maxima = jnp.stack([s.astype(jnp.float32).max(axis=-1) for s in stages], axis=1)
    return keypoints, scores, maxima
  return jax.jit(predict)


def predict_batches(predict_fn, variables, batches: Iterable[dict], mesh,
                    batch_size: int, input_size, keep_images: int = 0,
                    ground_truth_boxes: bool = True,
                    extras: Sequence[str] = (),
                    crop: str = 'centred'):
  """Runs `predict_fn` over host batches of `pipeline.eval_dataset`.

  A short last batch is padded to `batch_size` (`sharding.pad_batch`) so the
  jitted function compiles once; padding rows are dropped again. Returns the
  `Predictions` of every instance (keypoints mapped back to image pixels
  with the inverse of the `crop` the pipeline made, `geometry.input_to_image`;
  the batch fields named in `extras` go to `Predictions.extras`), the first
  `keep_images` crops, and their stage maps when `predict_fn` makes them
  (`make_predict_fn(..., stage_maps=True)`; else None).
  """
  sharding.check_batch_size(batch_size, mesh, 'eval.batch_size')
  columns: dict[str, list] = {}
  kept, kept_maps = [], []
  for batch in batches:
    padded, valid = sharding.pad_batch({'image': batch['image']}, batch_size)
    outputs = predict_fn(variables, sharding.global_batch(padded, mesh)['image'])
    keypoints, scores = jax.device_get(outputs[:2])
    rows = {'keypoints_input': keypoints[valid], 'scores': scores[valid]}
    rows.update({k: v for k, v in batch.items() if k != 'image'})
    for k, v in rows.items():
      columns.setdefault(k, []).append(np.asarray(v))
    if len(kept) < keep_images:
      wanted = keep_images - len(kept)
      kept.extend(batch['image'][:wanted])
      if len(outputs) > 2:
        kept_maps.extend(jax.device_get(outputs[2])[:len(batch['image'])][:wanted])
  if not columns:
    raise ValueError(
        'No instance to predict: the eval split has no scored instance (or, '
        'with config.eval.boxes, no kept person detection on its images).')
  c = {k: np.concatenate(v) for k, v in columns.items()}
  predictions = Predictions(
      image_id=c['image_id'],
      keypoints=geometry.input_to_image(c['keypoints_input'], c['center'],
                                        c['scale'], input_size, crop),
      keypoints_input=c['keypoints_input'], scores=c['scores'],
      gt_keypoints=c['gt_keypoints'], visibility=c['visibility'], bbox=c['bbox'],
      center=c['center'], scale=c['scale'], box_score=c['box_score'],
      ground_truth_boxes=ground_truth_boxes,
      extras={k: c[k] for k in extras})
  return predictions, np.asarray(kept), np.asarray(kept_maps) if kept_maps else None
