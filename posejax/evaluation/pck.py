"""PCK: percentage of correct keypoints under a per-instance distance scale."""

from __future__ import annotations

from typing import Any

import numpy as np


def pck(pred: np.ndarray,
        gt: np.ndarray,
        visibility: np.ndarray,
        normaliser: np.ndarray,
        threshold: float) -> dict[str, Any]:
  """Fraction of labelled keypoints predicted within a normalised distance.

  A keypoint counts when visibility > 0 (COCO: 1 occluded, 2 visible). It is
  correct when ||pred - gt|| <= threshold * normaliser[n]: the boundary
  counts as correct (inclusive, as in the MPII PCKh evaluation). A non-finite
  prediction is never correct.

  Args:
    pred: (N, K, 2) predicted (x, y).
    gt: (N, K, 2) ground-truth (x, y).
    visibility: (N, K) COCO visibility flags.
    normaliser: (N,) per-instance length, e.g. head size or box size.
    threshold: fraction of the normaliser.

  Returns:
    {'mean': correct / counted over all counted keypoints (nan if none),
     'per_keypoint': (K,) float64 the same per keypoint (nan where none
     counted), 'count': number of counted keypoints}.

  Raises:
    ValueError: mismatched shapes, or a non-positive / non-finite
      normaliser for an instance with counted keypoints.
  """
  pred = np.asarray(pred, np.float64)
  gt = np.asarray(gt, np.float64)
  visibility = np.asarray(visibility)
  normaliser = np.asarray(normaliser, np.float64)
  if (pred.ndim != 3 or pred.shape[-1] != 2 or gt.shape != pred.shape
      or visibility.shape != pred.shape[:2]
      or normaliser.shape != pred.shape[:1]):
    raise ValueError(
        'pck expects pred and gt (N, K, 2), visibility (N, K), normaliser '
        f'(N,); got {pred.shape}, {gt.shape}, {visibility.shape}, '
        f'{normaliser.shape}.')
  counted = visibility > 0
  bad = counted.any(axis=1) & ~(np.isfinite(normaliser) & (normaliser > 0))
  if bad.any():
    n = int(np.argmax(bad))
    raise ValueError(
        f'pck: instance {n} has labelled keypoints but normaliser '
        f'{normaliser[n]}; it must be a positive length (reject zero-size '
        'boxes when building the dataset).')

  distance = np.linalg.norm(pred - gt, axis=-1)  # (N, K)
  correct = (distance <= threshold * normaliser[:, None]) & counted
  per_count = counted.sum(axis=0)
  per_correct = correct.sum(axis=0)
  with np.errstate(invalid='ignore', divide='ignore'):
    per_keypoint = per_correct / per_count.astype(np.float64)
  count = int(per_count.sum())
  mean = float(per_correct.sum() / count) if count else float('nan')
  return {'mean': mean, 'per_keypoint': per_keypoint, 'count': count}


def box_pck(pred: np.ndarray,
            gt: np.ndarray,
            visibility: np.ndarray,
            boxes_xywh: np.ndarray,
            threshold: float = 0.1) -> dict[str, Any]:
  """PCK normalised by box size: PCK@0.1 with normaliser max(w, h).

  Args:
    pred: (N, K, 2) predicted (x, y).
    gt: (N, K, 2) ground-truth (x, y).
    visibility: (N, K) COCO visibility flags.
    boxes_xywh: (N, 4) instance boxes (x, y, w, h).
    threshold: fraction of the longer box side.

  Returns:
    As `pck`.
  """
  boxes_xywh = np.asarray(boxes_xywh, np.float64)
  if boxes_xywh.ndim != 2 or boxes_xywh.shape[1] != 4:
    raise ValueError(f'box_pck expects boxes (N, 4); got {boxes_xywh.shape}.')
  normaliser = np.maximum(boxes_xywh[:, 2], boxes_xywh[:, 3])
  return pck(pred, gt, visibility, normaliser, threshold)
