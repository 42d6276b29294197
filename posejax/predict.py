"""Images (+ boxes) -> keypoints: the model, optional flip test and decoding.

Used by evaluation, by the training loop's periodic eval and by notebooks. The
jitted part takes uint8 crops and returns keypoints in input pixels; the
host part maps them back to image pixels with the inverse crop.
"""

from __future__ import annotations

from collections.abc import Iterable

import jax
import jax.numpy as jnp
import numpy as np

from posejax import codecs
from posejax import sharding
from posejax.models import common


def make_predict_fn(model, codec: codecs.HeatmapCodec, flip_index=None,
                    flip_shift: bool = False):
  """(variables, uint8 images) -> (keypoints (B,K,2) input px, scores (B,K)).

  With `flip_index`, the mirrored crop is predicted too and its heatmaps,
  mirrored back with left/right swapped, are averaged with the plain ones.
  `flip_shift` moves the mirrored-back maps one pixel right first, as the
  official HRNet code's TEST.SHIFT_HEATMAP (see `codecs.shift_heatmaps_right`).
  """
  def predict(variables, images):
    x = common.model_inputs(model, images)
    heatmaps = model.apply(variables, x, train=False)[-1].astype(jnp.float32)
    if flip_index is not None:
      flipped = model.apply(variables, x[:, :, ::-1, :], train=False)[-1]
      flipped = codecs.flip_heatmaps(flipped.astype(jnp.float32), flip_index)
      if flip_shift:
        flipped = codecs.shift_heatmaps_right(flipped)
      heatmaps = 0.5 * (heatmaps + flipped)
    return codec.decode(heatmaps)
  return jax.jit(predict)


def input_to_image(keypoints, center, scale, input_size):
  """Inverse of the unrotated crop: input pixels -> image pixels (numpy).

  keypoints (N, K, 2); center, scale (N, 2) in image pixels; input_size (H, W).
  Mirrors `posejax.data.pipeline.crop_matrix` with rotation 0, no flip.
  """
  out_h, out_w = input_size
  half = np.array([(out_w - 1) / 2.0, (out_h - 1) / 2.0], np.float32)
  per_pixel = np.asarray(scale, np.float32) / np.array([out_w, out_h], np.float32)
  return ((np.asarray(keypoints) - half) * per_pixel[:, None, :]
          + np.asarray(center, np.float32)[:, None, :])


def predict_batches(predict_fn, variables, batches: Iterable[dict], mesh,
                    batch_size: int, input_size, keep_images: int = 0) -> dict:
  """Runs `predict_fn` over host batches (the last may be short).

  Short batches are padded to `batch_size` so the jitted function compiles
  once; padding rows are dropped again. Returns numpy arrays over all
  instances: `pred_keypoints` (image pixels), `pred_keypoints_input` (input
  pixels), `pred_scores`, every other field of the batches as it came (from
  `pipeline.eval_dataset`: ground truth `keypoints` in input pixels and
  `gt_keypoints` in image pixels, `visibility`, `image_id`, `bbox`, `center`,
  `scale`, `box_score` and the dataset's extras such as `head_box`,
  `category` or `attributes`), and the first `keep_images` crops.
  """
  sharding.check_batch_size(batch_size, mesh, 'eval.batch_size')
  outputs: dict[str, list] = {}
  kept = []
  for batch in batches:
    n = len(batch['image'])
    padded = {k: np.concatenate([v, np.repeat(v[-1:], batch_size - n, 0)])
              if n < batch_size else v for k, v in batch.items()}
    keypoints, scores = predict_fn(
        variables, sharding.global_batch({'image': padded['image']}, mesh)['image'])
    keypoints, scores = jax.device_get((keypoints, scores))
    rows = {'pred_keypoints_input': keypoints[:n], 'pred_scores': scores[:n]}
    rows.update({k: v for k, v in batch.items() if k != 'image'})
    for k, v in rows.items():
      outputs.setdefault(k, []).append(np.asarray(v))
    if len(kept) < keep_images:
      kept.extend(batch['image'][:keep_images - len(kept)])
  if not outputs:
    raise ValueError(
        'No instance to predict: the eval split has no scored instance (or, '
        'with config.eval.boxes, no kept person detection on its images).')
  result = {k: np.concatenate(v) for k, v in outputs.items()}
  result['pred_keypoints'] = input_to_image(
      result['pred_keypoints_input'], result['center'], result['scale'], input_size)
  result['images'] = np.asarray(kept)
  return result
