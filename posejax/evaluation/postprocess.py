"""Top-down post-processing: instance rescoring and OKS-NMS.

The official top-down COCO evaluation (deep-high-resolution-net.pytorch
COCODataset.evaluate) scores every instance box score x mean of its keypoint
scores above 0.2 (`coco.rescore_instances`) and, with person detections,
removes near-duplicate people of one image by greedy OKS-NMS (`coco.oks_nms`).
`distinct_people` is that NMS over arrays, used by evaluation here and by
prediction on images (posejax/predict.py, where HOG fires several times on
one person).
"""

from __future__ import annotations

import numpy as np

from posejax.evaluation import coco
from posejax.evaluation.predictions import Predictions


def distinct_people(keypoints: np.ndarray, instance_scores: np.ndarray,
                    areas: np.ndarray, sigmas, threshold: float) -> np.ndarray:
  """Indices (ascending) of the instances of one image that OKS-NMS keeps.

  keypoints (N, K, 2) image pixels, instance_scores (N,), areas (N,) the OKS
  scale of each instance (the official code passes its padded crop box).
  """
  kept = coco.oks_nms(
      [{'keypoints': k, 'score': s, 'area': a}
       for k, s, a in zip(keypoints, instance_scores, areas)], sigmas, threshold)
  return np.asarray(sorted(kept), np.int64)


def postprocess(predictions: Predictions, spec,
                oks_nms_threshold: float) -> Predictions:
  """Instance scores and, with detection boxes, OKS-NMS per image.

  With detections, OKS-NMS at `oks_nms_threshold` (eval.oks_nms_threshold,
  0.9; >= 1 keeps all) takes the OKS scale from the area of each padded crop
  box. Returns the kept instances with `instance_score` set.
  """
  p = predictions.replace(instance_score=coco.rescore_instances(
      predictions.box_score, predictions.scores))
  if p.ground_truth_boxes or oks_nms_threshold >= 1.0:
    return p
  area = p.scale[:, 0] * p.scale[:, 1]
  keep = []
  for image_id in dict.fromkeys(p.image_id.tolist()):
    rows = np.flatnonzero(p.image_id == image_id)
    keep.extend(rows[distinct_people(p.keypoints[rows], p.instance_score[rows],
                                     area[rows], spec.oks_sigmas,
                                     oks_nms_threshold)])
  return p.take(np.asarray(keep, np.int64))
