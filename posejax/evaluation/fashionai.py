"""FashionAI keypoint NE (normalised error), the challenge's metric.

Definition (FashionAI Global Challenge 2018, "Key Points Detection of
Apparel", evaluation section):

  NE = sum_k sum_p v_kp * d_kp / s_k  /  sum_k sum_p v_kp,

where k runs over garment images, p over the 24 keypoints, d_kp is the
Euclidean distance between prediction and ground truth, and s_k the image's
normaliser measured on the ground truth: the distance between armpit_left and
armpit_right for tops (blouse, outwear, dress), between waistband_left and
waistband_right for bottoms (trousers, skirt). NE is a pooled mean over
keypoints (not a mean of per-image means), reported in percent.

Which keypoints count (v_kp = 1): FashionAI labels each point with v = 1
(visible), v = 0 (occluded, position estimated by the annotator) or v = -1
(absent for this garment). The challenge scored only v = 1 points. posejax
stores FashionAI visibility COCO-style (v = 1 -> 2, v = 0 -> 1, v = -1 -> 0),
so only visibility == 2 counts here; occluded points are not scored.

Normaliser rule: s_k needs both of its points annotated (visibility > 0,
occluded allowed: their positions are annotated) and a positive length. An
image without them cannot be scored; it is skipped, and the counts of skipped
images are reported per category and overall. The challenge's statement
assumes every scored image has its normaliser; evaluation scripts written by
participants instead measured between whatever coordinates the file held (-1
for absent points) and fell back to 256 px when that came out 0. Skipping
avoids such a made-up scale, and the skipped counts show how many images it
concerns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from posejax import keypoints as keypoints_lib

# Garment category -> the two keypoints whose distance normalises its errors
# (armpits for tops and dresses, waistband ends for trousers and skirts), in
# the 24-point order of keypoints.FASHIONAI.
FASHIONAI_NORMALISER_PAIRS = keypoints_lib.FASHIONAI_NORMALISER_PAIRS

# COCO-style visibility values scored by NE: 2 = FashionAI's v = 1 (visible).
SCORED_VISIBILITY = 2


def _as_strings(categories: Any) -> np.ndarray:
  values = np.asarray(categories)
  if values.dtype.kind == 'S':  # TFDS yields bytes
    values = np.char.decode(values, 'utf-8')
  elif values.dtype.kind == 'O':
    values = np.array([v.decode('utf-8') if isinstance(v, bytes) else str(v)
                       for v in values.reshape(-1)]).reshape(values.shape)
  return values.astype(str)


def fashionai_ne(pred: np.ndarray,
                 gt: np.ndarray,
                 visibility: np.ndarray,
                 categories: Sequence[str] | np.ndarray,
                 normaliser_pairs: Mapping[str, tuple[int, int]] | None = None,
                 ) -> dict[str, Any]:
  """FashionAI NE in percent, overall and per garment category.

  Args:
    pred: (N, K, 2) predicted (x, y), K = 24 in the challenge order for the
      default normaliser pairs.
    gt: (N, K, 2) ground-truth (x, y).
    visibility: (N, K) COCO-style visibility (2 = FashionAI visible, the only
      value scored; see the module docstring).
    categories: (N,) garment category names (str or bytes).
    normaliser_pairs: category -> (i, j) keypoints whose ground-truth
      distance is the normaliser. Defaults to `FASHIONAI_NORMALISER_PAIRS`.

  Returns:
    {'NE': float percent over every scored keypoint (nan if none),
     'count': scored keypoints, 'instances': scored images,
     'skipped': images skipped for want of a normaliser,
     'per_keypoint': (K,) float64 percent (nan where none scored),
     'per_category': {category: {'NE', 'count', 'instances', 'skipped'}} for
       every category present in `categories`}.

  Raises:
    ValueError: mismatched shapes, an unknown category, or a non-finite
      prediction for a scored keypoint.
  """
  pairs = (FASHIONAI_NORMALISER_PAIRS if normaliser_pairs is None
           else normaliser_pairs)
  pred = np.asarray(pred, np.float64)
  gt = np.asarray(gt, np.float64)
  visibility = np.asarray(visibility)
  categories = _as_strings(categories)
  if (pred.ndim != 3 or pred.shape[-1] != 2 or gt.shape != pred.shape
      or visibility.shape != pred.shape[:2]
      or categories.shape != pred.shape[:1]):
    raise ValueError(
        'fashionai_ne expects pred and gt (N, K, 2), visibility (N, K), '
        f'categories (N,); got {pred.shape}, {gt.shape}, {visibility.shape}, '
        f'{categories.shape}.')
  unknown = sorted(set(categories.tolist()) - set(pairs))
  if unknown:
    raise ValueError(
        f'fashionai_ne: unknown categories {unknown}; known: {sorted(pairs)} '
        '(pass normaliser_pairs for others).')
  num_keypoints = pred.shape[1]
  if any(not 0 <= i < num_keypoints for pair in pairs.values() for i in pair):
    raise ValueError(
        f'fashionai_ne: normaliser pairs {dict(pairs)} do not fit K = '
        f'{num_keypoints} keypoints.')

  n = pred.shape[0]
  first = np.array([pairs[c][0] for c in categories], np.int64)
  second = np.array([pairs[c][1] for c in categories], np.int64)
  rows = np.arange(n)
  normaliser = np.linalg.norm(gt[rows, first] - gt[rows, second], axis=-1)
  scorable = ((visibility[rows, first] > 0) & (visibility[rows, second] > 0)
              & np.isfinite(normaliser) & (normaliser > 0))

  scored = (visibility == SCORED_VISIBILITY) & scorable[:, None]  # (N, K)
  distance = np.linalg.norm(pred - gt, axis=-1)
  bad = scored & ~np.isfinite(distance)
  if bad.any():
    i, k = np.argwhere(bad)[0]
    raise ValueError(
        f'fashionai_ne: instance {i} keypoint {k} has a non-finite '
        'prediction or ground truth; NE is undefined.')
  safe = np.where(scorable, normaliser, 1.0)
  error = np.where(scored, distance / safe[:, None], 0.0)

  def summary(select: np.ndarray) -> dict[str, Any]:
    count = int(scored[select].sum())
    total = float(error[select].sum())
    return {
        'NE': 100.0 * total / count if count else float('nan'),
        'count': count,
        'instances': int((select & scorable).sum()),
        'skipped': int((select & ~scorable).sum()),
    }

  out = summary(np.ones(n, bool))
  per_count = scored.sum(axis=0)
  with np.errstate(invalid='ignore', divide='ignore'):
    out['per_keypoint'] = 100.0 * error.sum(axis=0) / per_count
  out['per_category'] = {
      c: summary(categories == c) for c in sorted(set(categories.tolist()))
  }
  return out


def score(predictions, spec, ground_truth) -> dict[str, float]:
  """The 'fashionai_ne' metric of `evaluation.METRICS`: NE and NE/<category>, percent."""
  del spec, ground_truth
  categories = np.asarray(keypoints_lib.FASHIONAI_CATEGORIES)[
      predictions.extras['category']]
  ne = fashionai_ne(predictions.keypoints, predictions.gt_keypoints,
                    predictions.visibility, categories)
  metrics = {'NE': ne['NE']}
  metrics.update({f'NE/{c}': v['NE'] for c, v in ne['per_category'].items()})
  return metrics
