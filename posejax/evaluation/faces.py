"""Face-landmark metrics: inter-ocular NME, failure rate, CED AUC; Kaggle RMSE.

NME (normalised mean error), as HRNet-Facial-Landmark-Detection computes it
for 300W and WFLW (lib/core/evaluation.py `compute_nme`, after Wang et al.,
"Deep High-Resolution Representation Learning for Visual Recognition"):

  NME_face = (1 / L) * sum_l ||pred_l - gt_l|| / d,
  d = ||gt[a] - gt[b]||, (a, b) the outer eye corners ("inter-ocular"),

and the dataset NME is the plain mean of NME_face over faces. The failure
rate at 0.1 is the fraction of faces with NME_face > 0.1 (strictly, as that
code's `nme > 0.10` count); a face at exactly 0.1 is not a failure.

AUC@0.1: CED(e) = fraction of faces with NME_face <= e, and

  AUC = (1 / 0.1) * integral_0^0.1 CED(e) de.

This module integrates the step function exactly: a face with error x adds
max(0, T - x) to the integral, so AUC = mean over faces of max(0, 1 - x / T).
Implementations that sample the CED on a grid (e.g. step 1e-4 with the
trapezoid or Simpson rule) converge to this value as the step shrinks and
differ from it by about step / T per face at most.

Kaggle "Facial Keypoints Detection" RMSE: sqrt of the mean, over every
labelled coordinate (x and y counted separately), of the squared error in
pixels; keypoints missing from the ground truth are not scored, as in the
competition where only the requested (present) values were submitted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from posejax import keypoints as keypoints_lib

# Outer eye corners by number of landmarks, as the HRNet code picks them: the
# iBUG 68-point markup (300W) and the WFLW 98-point markup.
EYE_CORNERS_BY_NUM_LANDMARKS: dict[int, tuple[int, int]] = {
    keypoints_lib.IBUG_300W.num_keypoints: keypoints_lib.IBUG_300W_OUTER_EYE_CORNERS,
    keypoints_lib.WFLW.num_keypoints: keypoints_lib.WFLW_OUTER_EYE_CORNERS,
}

FAILURE_THRESHOLD = 0.1
AUC_THRESHOLD = 0.1


def _check_pair(pred: np.ndarray, gt: np.ndarray, name: str):
  if pred.ndim != 3 or pred.shape[-1] != 2 or gt.shape != pred.shape:
    raise ValueError(
        f'{name} expects pred and gt (N, K, 2); got {pred.shape} and '
        f'{gt.shape}.')


def _check_visibility(visibility: np.ndarray, shape: tuple[int, ...],
                      name: str):
  if visibility.shape != shape:
    raise ValueError(
        f'{name} expects visibility {shape} (N, K); got {visibility.shape}.')


def per_face_nme(pred: np.ndarray,
                 gt: np.ndarray,
                 eye_corners: tuple[int, int] | None = None,
                 visibility: np.ndarray | None = None) -> np.ndarray:
  """NME of each face: mean landmark error over the inter-ocular distance.

  Args:
    pred: (N, K, 2) predicted (x, y).
    gt: (N, K, 2) ground-truth (x, y).
    eye_corners: (a, b) landmark indices whose ground-truth distance is the
      normaliser. None picks `EYE_CORNERS_BY_NUM_LANDMARKS[K]` (300W for 68,
      WFLW for 98).
    visibility: optional (N, K) COCO visibility; when given, only landmarks
      with visibility > 0 are averaged (300W and WFLW label every landmark,
      so None, meaning all count, is their setting).

  Returns:
    (N,) float64 per-face NME (a fraction, not percent).

  Raises:
    ValueError: bad shapes, no default for K, eye corners unlabelled or
      coincident, a face with no labelled landmark, or a non-finite error.
  """
  pred = np.asarray(pred, np.float64)
  gt = np.asarray(gt, np.float64)
  _check_pair(pred, gt, 'per_face_nme')
  n, k = pred.shape[:2]
  if eye_corners is None:
    if k not in EYE_CORNERS_BY_NUM_LANDMARKS:
      raise ValueError(
          f'per_face_nme: no default eye corners for {k} landmarks (known: '
          f'{sorted(EYE_CORNERS_BY_NUM_LANDMARKS)}); pass eye_corners.')
    eye_corners = EYE_CORNERS_BY_NUM_LANDMARKS[k]
  a, b = eye_corners
  if not (0 <= a < k and 0 <= b < k):
    raise ValueError(
        f'per_face_nme: eye corners {eye_corners} out of range for {k} '
        'landmarks.')
  if visibility is None:
    counted = np.ones((n, k), bool)
  else:
    visibility = np.asarray(visibility)
    _check_visibility(visibility, (n, k), 'per_face_nme')
    counted = visibility > 0

  interocular = np.linalg.norm(gt[:, a] - gt[:, b], axis=-1)
  bad = ~(counted[:, a] & counted[:, b] & np.isfinite(interocular)
          & (interocular > 0))
  if bad.any():
    i = int(np.argmax(bad))
    raise ValueError(
        f'per_face_nme: face {i} has no usable inter-ocular distance '
        f'(landmarks {a} and {b} must be labelled and distinct; got '
        f'{interocular[i]}).')
  num_counted = counted.sum(axis=1)
  if (num_counted == 0).any():
    raise ValueError(
        f'per_face_nme: face {int(np.argmin(num_counted))} has no labelled '
        'landmark.')
  distance = np.linalg.norm(pred - gt, axis=-1)
  if not np.isfinite(distance[counted]).all():
    i = int(np.argwhere(counted & ~np.isfinite(distance))[0, 0])
    raise ValueError(f'per_face_nme: face {i} has a non-finite prediction.')
  total = np.where(counted, distance, 0.0).sum(axis=1)
  return total / (num_counted * interocular)


def failure_rate(nme: np.ndarray,
                 threshold: float = FAILURE_THRESHOLD) -> float:
  """Fraction of faces with NME > threshold (nan for no faces)."""
  nme = np.asarray(nme, np.float64)
  if nme.ndim != 1:
    raise ValueError(f'failure_rate expects per-face NME (N,); got '
                     f'{nme.shape}.')
  return float(np.mean(nme > threshold)) if nme.size else float('nan')


def ced_auc(nme: np.ndarray, threshold: float = AUC_THRESHOLD) -> float:
  """Area under the CED curve on [0, threshold], divided by threshold.

  Exact integral of the step CED: mean over faces of max(0, 1 - nme /
  threshold). 1 when every face is perfect, 0 when none is within threshold.

  Args:
    nme: (N,) per-face NME.
    threshold: upper end of the integration, 0.1 for AUC@0.1.

  Returns:
    The normalised area (nan for no faces).
  """
  nme = np.asarray(nme, np.float64)
  if nme.ndim != 1:
    raise ValueError(f'ced_auc expects per-face NME (N,); got {nme.shape}.')
  if not threshold > 0:
    raise ValueError(f'ced_auc: threshold must be positive; got {threshold}.')
  if not nme.size:
    return float('nan')
  return float(np.mean(np.maximum(0.0, 1.0 - nme / threshold)))


def _summary(nme: np.ndarray, failure_threshold: float,
             auc_threshold: float) -> dict[str, Any]:
  return {
      'nme': float(np.mean(nme)) if nme.size else float('nan'),
      'failure_rate': failure_rate(nme, failure_threshold),
      'auc': ced_auc(nme, auc_threshold),
      'count': int(nme.size),
  }


def face_nme(pred: np.ndarray,
             gt: np.ndarray,
             eye_corners: tuple[int, int] | None = None,
             visibility: np.ndarray | None = None,
             subsets: Mapping[str, np.ndarray] | None = None,
             failure_threshold: float = FAILURE_THRESHOLD,
             auc_threshold: float = AUC_THRESHOLD) -> dict[str, Any]:
  """Dataset NME, failure rate and CED AUC, optionally per subset.

  Args:
    pred, gt, eye_corners, visibility: as `per_face_nme`.
    subsets: name -> (N,) boolean mask of the faces in that subset (e.g. the
      WFLW attribute lists: pose, expression, illumination, make-up,
      occlusion, blur). Each subset gets the same summary as the whole set.
    failure_threshold: NME above which a face is a failure (0.1).
    auc_threshold: upper end of the CED integration (0.1).

  Returns:
    {'nme': mean per-face NME (fraction), 'failure_rate': fraction of faces
     with NME > failure_threshold, 'auc': CED AUC in [0, 1], 'count': faces,
     'per_face': (N,) float64 per-face NME,
     'subsets': {name: {'nme', 'failure_rate', 'auc', 'count'}}} (an empty
    subset gives nan values and count 0).
  """
  nme = per_face_nme(pred, gt, eye_corners, visibility)
  out = _summary(nme, failure_threshold, auc_threshold)
  out['per_face'] = nme
  out['subsets'] = {}
  for name, mask in (subsets or {}).items():
    mask = np.asarray(mask)
    if mask.shape != nme.shape or mask.dtype != bool:
      raise ValueError(
          f'face_nme: subset {name!r} must be a boolean mask of shape '
          f'{nme.shape}; got {mask.dtype} {mask.shape}.')
    out['subsets'][name] = _summary(nme[mask], failure_threshold,
                                    auc_threshold)
  return out


def kaggle_rmse(pred: np.ndarray,
                gt: np.ndarray,
                visibility: np.ndarray) -> dict[str, Any]:
  """Kaggle facial-keypoints RMSE in pixels over labelled coordinates.

  RMSE = sqrt(sum over labelled keypoints of (dx^2 + dy^2) / (2 * labelled)),
  i.e. x and y are separate scored values.

  Args:
    pred: (N, K, 2) predicted (x, y) in pixels (96 x 96 images in Kaggle).
    gt: (N, K, 2) ground-truth (x, y).
    visibility: (N, K) COCO visibility; keypoints with visibility > 0 count.

  Returns:
    {'rmse': float pixels (nan if nothing is labelled), 'count': number of
     scored coordinates (2 per labelled keypoint), 'per_keypoint': (K,)
     float64 RMSE of each keypoint's coordinates (nan where none labelled)}.

  Raises:
    ValueError: bad shapes or a non-finite prediction for a labelled keypoint.
  """
  pred = np.asarray(pred, np.float64)
  gt = np.asarray(gt, np.float64)
  _check_pair(pred, gt, 'kaggle_rmse')
  visibility = np.asarray(visibility)
  _check_visibility(visibility, pred.shape[:2], 'kaggle_rmse')
  counted = visibility > 0
  squared = np.sum((pred - gt) ** 2, axis=-1)  # (N, K): dx^2 + dy^2
  if not np.isfinite(squared[counted]).all():
    i, k = np.argwhere(counted & ~np.isfinite(squared))[0]
    raise ValueError(
        f'kaggle_rmse: instance {i} keypoint {k} has a non-finite '
        'prediction.')
  squared = np.where(counted, squared, 0.0)
  per_count = 2 * counted.sum(axis=0)
  count = int(per_count.sum())
  with np.errstate(invalid='ignore', divide='ignore'):
    per_keypoint = np.sqrt(squared.sum(axis=0) / per_count)
  rmse = float(np.sqrt(squared.sum() / count)) if count else float('nan')
  return {'rmse': rmse, 'count': count, 'per_keypoint': per_keypoint}


def score_nme(predictions, spec, ground_truth) -> dict[str, float]:
  """The 'nme' metric of `evaluation.METRICS`: NME and FR@0.1 in percent, AUC@0.1.

  On WFLW (predictions with `extras['attributes']`) also per attribute
  subset ('NME/pose', 'FR@0.1/pose', ...). The eye corners follow the
  landmark count (EYE_CORNERS_BY_NUM_LANDMARKS).
  """
  del spec, ground_truth
  subsets = None
  if 'attributes' in predictions.extras:
    flags = predictions.extras['attributes']
    subsets = {name: flags[:, i] > 0
               for i, name in enumerate(keypoints_lib.WFLW_ATTRIBUTES)}
  nme = face_nme(predictions.keypoints, predictions.gt_keypoints,
                 visibility=predictions.visibility, subsets=subsets)
  metrics = {}
  for suffix, summary in [('', nme)] + [(f'/{k}', v) for k, v in nme['subsets'].items()]:
    metrics[f'NME{suffix}'] = 100.0 * summary['nme']
    metrics[f'FR@0.1{suffix}'] = 100.0 * summary['failure_rate']
    metrics[f'AUC@0.1{suffix}'] = summary['auc']
  return metrics


def score_rmse(predictions, spec, ground_truth) -> dict[str, float]:
  """The 'rmse' metric of `evaluation.METRICS`: RMSE and RMSE/<keypoint>, in pixels."""
  del ground_truth
  rmse = kaggle_rmse(predictions.keypoints, predictions.gt_keypoints,
                     predictions.visibility)
  metrics = {'RMSE': rmse['rmse']}
  metrics.update({f'RMSE/{name}': v for name, v in
                  zip(spec.keypoint_names, rmse['per_keypoint'])})
  return metrics
