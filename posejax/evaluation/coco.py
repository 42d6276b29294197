"""COCO keypoint metrics (OKS AP/AR) via pycocotools; rescoring, OKS-NMS.

The scoring itself is pycocotools' `COCOeval(..., 'keypoints')`; nothing here
re-implements its OKS matching. `rescore_instances` and `oks_nms` are the
post-processing the official top-down code applies to detector-box predictions
before they are scored (deep-high-resolution-net.pytorch,
lib/dataset/coco.py `COCODataset.evaluate` and lib/nms/nms.py).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from posejax.evaluation import pck
from posejax.keypoints import KeypointSpec

# Order of `COCOeval.stats` for iouType='keypoints' (see `_summarizeKps`): all
# use maxDets=20; there is no "small" range for keypoints.
METRIC_NAMES = ('AP', 'AP50', 'AP75', 'APm', 'APl',
                'AR', 'AR50', 'AR75', 'ARm', 'ARl')

# Fields COCOeval reads from every ground-truth annotation for keypoints.
_REQUIRED_GT_FIELDS = ('id', 'image_id', 'category_id', 'keypoints',
                       'num_keypoints', 'area', 'bbox', 'iscrowd')
# The only result fields passed to pycocotools. Anything else (a detector
# 'bbox' in particular) would send `COCO.loadRes` down its box branch, which
# sets the detection area from the box instead of from the keypoints' extent.
_RESULT_FIELDS = ('image_id', 'category_id', 'keypoints', 'score')


def keypoint_results(image_ids: np.ndarray,
                     keypoints: np.ndarray,
                     keypoint_scores: np.ndarray,
                     instance_scores: np.ndarray,
                     category_id: int = 1) -> list[dict[str, Any]]:
  """Packs per-instance predictions as COCO keypoint results entries.

  Args:
    image_ids: (N,) COCO image ids.
    keypoints: (N, K, 2) predicted (x, y) in original-image pixels.
    keypoint_scores: (N, K) per-keypoint confidences.
    instance_scores: (N,) one score per instance (used to rank detections).
    category_id: COCO category of every instance (1 = person).

  Returns:
    A list of N dicts `{'image_id': int, 'category_id': int, 'keypoints':
    [x1, y1, s1, ..., xK, yK, sK], 'score': float}` with plain Python numbers,
    ready for `json.dump` or `coco_keypoint_metrics`.
  """
  image_ids = np.asarray(image_ids)
  keypoints = np.asarray(keypoints, np.float64)
  keypoint_scores = np.asarray(keypoint_scores, np.float64)
  instance_scores = np.asarray(instance_scores, np.float64)
  n = image_ids.shape[0] if image_ids.ndim else -1
  if (image_ids.ndim != 1 or keypoints.ndim != 3 or keypoints.shape[0] != n
      or keypoints.shape[2] != 2
      or keypoint_scores.shape != keypoints.shape[:2]
      or instance_scores.shape != (n,)):
    raise ValueError(
        'keypoint_results expects image_ids (N,), keypoints (N, K, 2), '
        'keypoint_scores (N, K), instance_scores (N,); got '
        f'{image_ids.shape}, {keypoints.shape}, {keypoint_scores.shape}, '
        f'{instance_scores.shape}.')
  flat = np.concatenate([keypoints, keypoint_scores[..., None]], axis=-1)
  flat = flat.reshape(n, keypoints.shape[1] * 3)
  return [{
      'image_id': int(image_ids[i]),
      'category_id': int(category_id),
      'keypoints': flat[i].tolist(),
      'score': float(instance_scores[i]),
  } for i in range(n)]


def _check_ground_truth(ground_truth: Mapping[str, Any], num_keypoints: int):
  """Raises a ValueError naming the first missing or malformed field."""
  for key in ('images', 'annotations', 'categories'):
    if key not in ground_truth:
      raise ValueError(
          f'COCO ground truth has no {key!r} list; it needs "images", '
          '"annotations" and "categories" like person_keypoints_val2017.json.')
  for ann in ground_truth['annotations']:
    for field in _REQUIRED_GT_FIELDS:
      if field not in ann:
        raise ValueError(
            f'COCO ground-truth annotation {ann.get("id", "<no id>")} (image '
            f'{ann.get("image_id", "?")}) has no {field!r} field. Keypoint '
            f'evaluation needs {", ".join(_REQUIRED_GT_FIELDS)}: "area" sets '
            'the OKS scale and the area ranges, "iscrowd"=1 marks crowd '
            'regions (use 0 for ordinary instances).')
    if len(ann['keypoints']) != 3 * num_keypoints:
      raise ValueError(
          f'COCO ground-truth annotation {ann["id"]} has '
          f'{len(ann["keypoints"])} keypoint values; the spec has '
          f'{num_keypoints} keypoints, so 3 * {num_keypoints} are expected.')


def _quiet(fn, *args):
  """Calls fn with pycocotools' progress printing swallowed."""
  with contextlib.redirect_stdout(io.StringIO()):
    return fn(*args)


def coco_keypoint_metrics(ground_truth: Mapping[str, Any],
                          results: Sequence[Mapping[str, Any]],
                          spec: KeypointSpec) -> dict[str, float]:
  """OKS-based AP/AR of keypoint results, computed by pycocotools.

  Args:
    ground_truth: an in-memory COCO keypoint dataset (the parsed
      person_keypoints_*.json): 'images', 'categories' and 'annotations' with
      id, image_id, category_id, keypoints, num_keypoints, area, bbox, iscrowd.
      It is not modified.
    results: COCO keypoint results, e.g. from `keypoint_results`. Only
      image_id, category_id, keypoints and score are used, so the detection
      area is the keypoints' extent as in the official evaluation.
    spec: gives the OKS sigmas (`spec.oks_sigmas`).

  Returns:
    {'AP', 'AP50', 'AP75', 'APm', 'APl', 'AR', 'AR50', 'AR75', 'ARm', 'ARl'}
    from `COCOeval.stats` (maxDets=20, pycocotools' default for keypoints).
    An area range without ground truth gives -1, pycocotools' "undefined".
    Empty `results` score 0 everywhere the ground truth defines a metric
    (pycocotools' own `loadRes` would raise on an empty list).

  Raises:
    ValueError: the spec has no OKS sigmas, the ground truth lacks a field
      COCOeval needs, or a result refers to an image not in the ground truth.
  """
  if spec.oks_sigmas is None:
    raise ValueError(
        f'Keypoint spec {spec.name!r} has no OKS sigmas; COCO keypoint AP '
        'needs them (set oks_sigmas in posejax/keypoints.py).')
  num_keypoints = len(spec.oks_sigmas)
  _check_ground_truth(ground_truth, num_keypoints)

  # COCOeval writes an 'ignore' flag into the annotations and loadRes writes
  # id/area/bbox into the results: work on shallow copies.
  gt = COCO()
  gt.dataset = {
      'info': dict(ground_truth.get('info', {})),
      'images': list(ground_truth['images']),
      'categories': list(ground_truth['categories']),
      'annotations': [dict(a) for a in ground_truth['annotations']],
  }
  _quiet(gt.createIndex)

  results = [{k: r[k] for k in _RESULT_FIELDS} for r in results]
  known_images = set(gt.getImgIds())
  for r in results:
    if len(r['keypoints']) != 3 * num_keypoints:
      raise ValueError(
          f'A result for image {r["image_id"]} has {len(r["keypoints"])} '
          f'keypoint values; expected 3 * {num_keypoints} (x, y, score).')
    if r['image_id'] not in known_images:
      raise ValueError(
          f'A result refers to image_id {r["image_id"]}, which is not in the '
          'ground truth; evaluate against the annotation file the '
          'predictions were made for.')

  if results:
    dt = _quiet(gt.loadRes, results)
  else:
    # loadRes indexes results[0]; an empty detection set built by hand makes
    # COCOeval score every defined metric 0 instead.
    dt = COCO()
    dt.dataset = {'images': gt.dataset['images'],
                  'categories': gt.dataset['categories'],
                  'annotations': []}
    _quiet(dt.createIndex)

  coco_eval = COCOeval(gt, dt, 'keypoints')
  coco_eval.params.kpt_oks_sigmas = np.array(spec.oks_sigmas, np.float64)
  _quiet(coco_eval.evaluate)
  _quiet(coco_eval.accumulate)
  _quiet(coco_eval.summarize)
  return {name: float(v) for name, v in zip(METRIC_NAMES, coco_eval.stats)}


def rescore_instances(box_scores: np.ndarray,
                      keypoint_scores: np.ndarray,
                      threshold: float = 0.2) -> np.ndarray:
  """Top-down instance score: box score x mean confident keypoint score.

  Follows deep-high-resolution-net.pytorch lib/dataset/coco.py
  `COCODataset.evaluate` ("rescoring"): keypoint scores strictly greater than
  `threshold` (TEST.IN_VIS_THRE, 0.2 in the released COCO configs) are
  averaged; if none passes, the keypoint term, and so the score, is 0.

  Args:
    box_scores: (N,) detector box scores (1 for ground-truth boxes).
    keypoint_scores: (N, K) per-keypoint confidences (heatmap maxima).
    threshold: keypoint scores must exceed this to count.

  Returns:
    (N,) float64 rescored instance scores.
  """
  box_scores = np.asarray(box_scores, np.float64)
  keypoint_scores = np.asarray(keypoint_scores, np.float64)
  if (keypoint_scores.ndim != 2
      or box_scores.shape != keypoint_scores.shape[:1]):
    raise ValueError(
        'rescore_instances expects box_scores (N,) and keypoint_scores '
        f'(N, K); got {box_scores.shape} and {keypoint_scores.shape}.')
  confident = keypoint_scores > threshold
  count = confident.sum(axis=1)
  total = np.where(confident, keypoint_scores, 0.0).sum(axis=1)
  mean = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
  return box_scores * mean


def _instance_area(result: Mapping[str, Any]) -> float:
  if 'area' in result:
    return float(result['area'])
  if 'bbox' in result:
    _, _, w, h = result['bbox']
    return float(w) * float(h)
  raise ValueError(
      'oks_nms needs an "area" or a "bbox" (x, y, w, h) in every result to '
      'set the OKS scale.')


def oks_nms(results_for_one_image: Sequence[Mapping[str, Any]],
            sigmas: Sequence[float] | np.ndarray,
            threshold: float = 0.9) -> list[int]:
  """Greedy OKS non-maximum suppression of one image's instances.

  Mirrors `oks_nms`/`oks_iou` of deep-high-resolution-net.pytorch
  lib/nms/nms.py as called from lib/dataset/coco.py (no visibility
  threshold): visit instances by decreasing score, keep the current one and
  drop every remaining one whose OKS with it is > `threshold` (0.9 is
  TEST.OKS_THRE of the released COCO configs). Between instances i and j,

    OKS = mean_k exp(-d_k^2 / (2 * s^2 * (2 * sigma_k)^2)),
    s^2 = (area_i + area_j) / 2,

  averaged over all K keypoints whatever their scores, i.e. the COCO OKS with
  the mean of the two instance areas as the scale. The area is the result's
  'area' if present, else w * h of its 'bbox'. The official code passes the
  area of its padded crop box (scale * 200: the detector box widened to the
  model's aspect ratio and enlarged 1.25x); pass that as 'area' for parity.
  Ties in score keep their input order.

  Args:
    results_for_one_image: dicts with 'keypoints' (flat [x, y, score] * K, or
      an array (K, 2) / (K, 3)), 'score', and 'area' or 'bbox'.
    sigmas: (K,) OKS sigmas, e.g. `spec.oks_sigmas`.
    threshold: OKS above which the lower-scored instance is suppressed.

  Returns:
    Indices into `results_for_one_image` of the kept instances, highest
    score first.
  """
  n = len(results_for_one_image)
  if n == 0:
    return []
  sigmas = np.asarray(sigmas, np.float64)
  k = sigmas.shape[0]
  xy = []
  for r in results_for_one_image:
    kp = np.asarray(r['keypoints'], np.float64)
    if kp.size not in (2 * k, 3 * k):
      raise ValueError(
          f'oks_nms: a result has {kp.size} keypoint values; expected {k} '
          f'keypoints ({3 * k} flat values).')
    xy.append(kp.reshape(k, -1)[:, :2])
  xy = np.stack(xy)  # (N, K, 2)
  scores = np.array([float(r['score']) for r in results_for_one_image])
  areas = np.array([_instance_area(r) for r in results_for_one_image])
  variances = (2.0 * sigmas) ** 2

  order = np.argsort(-scores, kind='stable')
  keep = []
  while order.size:
    i, rest = order[0], order[1:]
    keep.append(int(i))
    sq_dist = np.sum((xy[rest] - xy[i]) ** 2, axis=-1)  # (M, K)
    scale = (areas[i] + areas[rest])[:, None] / 2 + np.spacing(1)
    oks = np.mean(np.exp(-sq_dist / variances / scale / 2), axis=-1)
    order = rest[oks <= threshold]
  return keep


def score(predictions, spec: KeypointSpec, ground_truth) -> dict[str, float]:
  """The 'coco' metric of `evaluation.METRICS`: pycocotools OKS AP/AR, and box PCK@0.1.

  `ground_truth()` gives the eval split's annotations as a COCO dict: AP is
  computed against every annotation, so that missed people count. With
  annotated boxes (one prediction per annotation) PCK@0.1 normalised by the
  box is added.
  """
  metrics = coco_keypoint_metrics(ground_truth(), predictions.coco_results, spec)
  if predictions.ground_truth_boxes:
    metrics['PCK@0.1'] = pck.box_pck(predictions.keypoints, predictions.gt_keypoints,
                                     predictions.visibility, predictions.bbox,
                                     0.1)['mean']
  return metrics
