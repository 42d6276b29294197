"""Tests for posejax.evaluation.coco (COCO OKS AP via pycocotools)."""

import copy
import dataclasses
import math

import numpy as np
import pytest

from posejax import keypoints as kp_lib
from posejax.evaluation import coco

SPEC = kp_lib.COCO
K = SPEC.num_keypoints
CROWD_BOX = (420.0, 40.0, 150.0, 200.0)


def _person(rng, image_id, ann_id, x, y, w, h):
  xy = rng.uniform([x, y], [x + w, y + h], size=(K, 2))
  vis = rng.choice([0, 1, 2], size=K, p=[0.2, 0.2, 0.6])
  vis[SPEC.index('left_shoulder')] = 2  # at least one labelled keypoint
  xy[vis == 0] = 0.0  # COCO stores unlabelled keypoints as (0, 0, 0)
  flat = np.concatenate([xy, vis[:, None]], axis=1).reshape(-1)
  return {
      'id': ann_id, 'image_id': image_id, 'category_id': 1,
      'keypoints': flat.tolist(), 'num_keypoints': int((vis > 0).sum()),
      'area': 0.6 * w * h, 'bbox': [x, y, w, h], 'iscrowd': 0,
  }


def _ground_truth(seed=0):
  """3 images x 4 persons (medium and large) + 1 image with a crowd region."""
  rng = np.random.default_rng(seed)
  images, anns = [], []
  ann_id = 1
  for image_id in (11, 12, 13):
    images.append({'id': image_id, 'width': 640, 'height': 480})
    for p, (w, h) in enumerate([(60, 110), (150, 260), (90, 140), (200, 300)]):
      anns.append(_person(rng, image_id, ann_id, 10 + 150 * p, 20, w, h))
      ann_id += 1
  images.append({'id': 14, 'width': 640, 'height': 480})
  anns.append(_person(rng, 14, ann_id, 20, 20, 120, 220))
  anns.append({
      'id': ann_id + 1, 'image_id': 14, 'category_id': 1,
      'keypoints': [0] * (3 * K), 'num_keypoints': 0,
      'area': 0.5 * CROWD_BOX[2] * CROWD_BOX[3], 'bbox': list(CROWD_BOX),
      'iscrowd': 1,
  })
  return {'images': images, 'annotations': anns,
          'categories': [{'id': 1, 'name': 'person',
                          'keypoints': list(SPEC.keypoint_names),
                          'skeleton': [[a + 1, b + 1] for a, b in
                                       SPEC.skeleton]}]}


def _persons(gt):
  return [a for a in gt['annotations'] if a['num_keypoints'] > 0]


def _predictions(gt, noise=0.0, score=1.0, seed=1, skip=()):
  """GT persons as predictions, optionally with noise ~ noise * sqrt(area)."""
  rng = np.random.default_rng(seed)
  image_ids, kps = [], []
  for ann in _persons(gt):
    if ann['id'] in skip:
      continue
    xy = np.array(ann['keypoints'], np.float64).reshape(K, 3)[:, :2]
    x, y, w, h = ann['bbox']
    unlabelled = np.array(ann['keypoints'][2::3]) == 0
    xy[unlabelled] = rng.uniform([x, y], [x + w, y + h],
                                 size=(unlabelled.sum(), 2))
    xy += rng.normal(size=xy.shape) * noise * math.sqrt(ann['area'])
    image_ids.append(ann['image_id'])
    kps.append(xy)
  n = len(kps)
  return coco.keypoint_results(np.array(image_ids), np.stack(kps),
                               np.ones((n, K)), np.full(n, score))


def _in_crowd(rng, score=1.0):
  x, y, w, h = CROWD_BOX
  xy = rng.uniform([x, y], [x + w, y + h], size=(1, K, 2))
  return coco.keypoint_results(np.array([14]), xy, np.ones((1, K)),
                               np.array([score]))


def test_keypoint_results_format():
  kps = np.arange(2 * K * 2, dtype=np.float32).reshape(2, K, 2)
  scores = np.linspace(0, 1, 2 * K).reshape(2, K)
  out = coco.keypoint_results(np.array([5, 7]), kps, scores,
                              np.array([0.25, 0.5]), category_id=3)
  assert [r['image_id'] for r in out] == [5, 7]
  assert type(out[0]['image_id']) is int and type(out[0]['score']) is float
  assert out[1]['category_id'] == 3 and out[1]['score'] == 0.5
  flat = out[1]['keypoints']
  assert len(flat) == 3 * K and all(type(v) is float for v in flat)
  assert flat[:3] == [kps[1, 0, 0], kps[1, 0, 1], pytest.approx(scores[1, 0])]
  assert flat[-3:] == [kps[1, -1, 0], kps[1, -1, 1], pytest.approx(1.0)]


def test_perfect_predictions_score_one_and_leave_gt_untouched():
  gt = _ground_truth()
  before = copy.deepcopy(gt)
  metrics = coco.coco_keypoint_metrics(gt, _predictions(gt), SPEC)
  assert set(metrics) == set(coco.METRIC_NAMES)
  for name, value in metrics.items():
    assert value == pytest.approx(1.0), name
  assert gt == before


def test_noise_lowers_ap_monotonically():
  gt = _ground_truth()
  aps = [coco.coco_keypoint_metrics(gt, _predictions(gt, noise), SPEC)['AP']
         for noise in (0.03, 0.08, 0.15)]
  assert 1.0 > aps[0] > aps[1] > aps[2]


def test_empty_results_give_zeros():
  metrics = coco.coco_keypoint_metrics(_ground_truth(), [], SPEC)
  assert metrics == {name: 0.0 for name in coco.METRIC_NAMES}


def test_missing_prediction_lowers_recall():
  gt = _ground_truth()
  persons = _persons(gt)
  metrics = coco.coco_keypoint_metrics(
      gt, _predictions(gt, skip={persons[2]['id']}), SPEC)
  assert metrics['AR'] == pytest.approx((len(persons) - 1) / len(persons))
  assert metrics['AP'] < 1.0


def test_crowd_region_absorbs_detections():
  rng = np.random.default_rng(3)
  gt = _ground_truth()
  true = _predictions(gt, score=0.9)
  extras = _in_crowd(rng) + _in_crowd(rng)  # outscore every true prediction
  assert coco.coco_keypoint_metrics(
      gt, true + extras, SPEC)['AP'] == pytest.approx(1.0)
  # The same detections far from any region or person are false positives.
  far = copy.deepcopy(extras)
  for r in far:
    r['keypoints'][1::3] = [y + 250.0 for y in r['keypoints'][1::3]]
  assert coco.coco_keypoint_metrics(gt, true + far, SPEC)['AP'] < 1.0
  # Without iscrowd a region matches only once: the second one becomes an FP.
  for ann in gt['annotations']:
    ann['iscrowd'] = 0
  assert coco.coco_keypoint_metrics(gt, true + extras, SPEC)['AP'] < 1.0


@pytest.mark.parametrize('sigma_scale', [1.0, 2.0])
@pytest.mark.parametrize('factor, ap50', [(0.999, 1.0), (1.001, 0.0)])
def test_single_keypoint_oks_at_half(factor, ap50, sigma_scale):
  # sigma_scale 2 checks that the spec's sigmas, not pycocotools' default
  # (COCO) ones, are used.
  spec = dataclasses.replace(
      SPEC, oks_sigmas=tuple(sigma_scale * s for s in SPEC.oks_sigmas))
  j = spec.index('left_wrist')
  area = 100.0 * 100.0
  gt_xy = np.array([150.0, 120.0])
  labelled = np.zeros((K, 3))
  labelled[j] = [*gt_xy, 2]
  gt = {'images': [{'id': 1, 'width': 400, 'height': 300}],
        'categories': [{'id': 1, 'name': 'person'}],
        'annotations': [{'id': 1, 'image_id': 1, 'category_id': 1,
                         'keypoints': labelled.reshape(-1).tolist(),
                         'num_keypoints': 1, 'area': area,
                         'bbox': [100.0, 70.0, 100.0, 100.0], 'iscrowd': 0}]}
  # OKS = exp(-d^2 / (2 s^2 k^2)), s^2 = area, k = 2 sigma: 0.5 at d0.
  kappa = 2 * spec.oks_sigmas[j]
  d0 = kappa * math.sqrt(2 * area * math.log(2))
  pred = np.tile(gt_xy, (1, K, 1))
  pred[0, j, 0] += factor * d0
  results = coco.keypoint_results(np.array([1]), pred, np.ones((1, K)),
                                  np.ones(1))
  metrics = coco.coco_keypoint_metrics(gt, results, spec)
  assert metrics['AP50'] == pytest.approx(ap50)
  assert metrics['AP75'] == 0.0
  # Matched only at OKS threshold 0.50 out of 0.50:0.05:0.95.
  assert metrics['AP'] == pytest.approx(ap50 / 10)


@pytest.mark.parametrize('field', ['iscrowd', 'area'])
def test_missing_gt_field_is_a_clear_error(field):
  gt = _ground_truth()
  results = _predictions(gt)
  del gt['annotations'][3][field]
  with pytest.raises(ValueError, match=field):
    coco.coco_keypoint_metrics(gt, results, SPEC)


def test_result_for_unknown_image_is_a_clear_error():
  gt = _ground_truth()
  results = _predictions(gt)
  results[0]['image_id'] = 999
  with pytest.raises(ValueError, match='999'):
    coco.coco_keypoint_metrics(gt, results, SPEC)


def test_rescore_instances():
  box = np.array([0.9, 0.5, 1.0, 0.8])
  kpt = np.array([[0.1, 0.5, 0.7, 0.2],   # 0.2 is not above the threshold
                  [0.1, 0.1, 0.2, 0.0],   # nothing above: score 0
                  [0.3, 0.3, 0.3, 0.3],
                  [1.0, 0.9, 0.25, 0.05]])
  out = coco.rescore_instances(box, kpt, threshold=0.2)
  np.testing.assert_allclose(out, [0.9 * 0.6, 0.0, 0.3,
                                   0.8 * (1.0 + 0.9 + 0.25) / 3])
  np.testing.assert_allclose(coco.rescore_instances(box, kpt, threshold=0.0),
                             [0.9 * 1.5 / 4, 0.5 * 0.4 / 3, 0.3,
                              0.8 * 2.2 / 4])


def _instance(offset, score, **area):
  xy = np.stack([np.arange(K) * 3.0, np.arange(K) * 2.0], axis=1) + offset
  flat = np.concatenate([xy, np.full((K, 1), 0.5)], axis=1).reshape(-1)
  return {'keypoints': flat.tolist(), 'score': score, **area}


def test_oks_nms_threshold_uses_mean_area():
  sigmas = np.full(K, 0.1)
  # All keypoints shifted by delta: OKS = exp(-delta^2 / (2 s^2 (2 sigma)^2))
  # with s^2 = mean area = 100, which is 0.9 at delta0.
  delta0 = math.sqrt(-math.log(0.9) * 2 * 100 * 0.2 ** 2)
  for factor, expected in [(0.999, [0]), (1.001, [0, 1])]:
    results = [_instance(0.0, 0.9, area=50.0),
               _instance([factor * delta0, 0.0], 0.8, area=150.0)]
    assert coco.oks_nms(results, sigmas, threshold=0.9) == expected
  # With the area taken from the bbox instead (10 x 15 = 150) nothing changes.
  results = [_instance(0.0, 0.9, area=50.0),
             _instance([0.999 * delta0, 0.0], 0.8, bbox=[0, 0, 10, 15])]
  assert coco.oks_nms(results, sigmas, threshold=0.9) == [0]


def test_oks_nms_is_greedy_and_ordered_by_score():
  sigmas = np.array(SPEC.oks_sigmas)
  step = 3.5
  results = [
      _instance([2 * step, 0.0], 0.7, area=10000.0),  # C: near B, far from A
      _instance(0.0, 0.9, area=10000.0),              # A
      _instance([500.0, 500.0], 0.95, area=10000.0),  # D: far from all
      _instance([step, 0.0], 0.8, area=10000.0),      # B: near A
  ]
  # Check the premise: B overlaps A and C, but A and C do not overlap.
  a, b, c = (np.array(results[i]['keypoints']).reshape(K, 3)[:, :2]
             for i in (1, 3, 0))
  def oks(p, q):
    return np.mean(np.exp(-np.sum((p - q) ** 2, -1) / (2 * 1e4 *
                                                       (2 * sigmas) ** 2)))
  assert oks(a, b) > 0.9 and oks(b, c) > 0.9 and oks(a, c) <= 0.9
  # B is suppressed by A, so it cannot suppress C.
  assert coco.oks_nms(results, sigmas, threshold=0.9) == [2, 1, 0]
  assert coco.oks_nms([], sigmas) == []


# COCO OKS sigmas as published with the keypoint evaluation (cocoeval.py),
# written out so these checks do not depend on the spec.
COCO_SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62,
                        .62, 1.07, 1.07, .87, .87, .89, .89]) / 10.0


def test_rescore_instances_defaults_and_shapes():
  box = np.array([0.5, 1.0])
  kpt = np.array([[0.2, 0.21, 0.9, 0.0], [0.19, 0.1, 0.0, 0.2]])
  # Row 0: 0.21 and 0.9 pass 0.2 -> 0.5 * 1.11 / 2. Row 1: none -> 0.
  np.testing.assert_allclose(coco.rescore_instances(box, kpt),
                             [0.5 * 1.11 / 2, 0.0])
  with pytest.raises(ValueError, match='expects'):
    coco.rescore_instances(box[:1], kpt)


def test_oks_nms_coco_sigmas_default_threshold():
  # With all 17 keypoints equal but m moved far away, OKS = (17 - m) / 17
  # (the moved terms vanish): m = 1 gives 0.941 > 0.9 (suppressed), m = 2
  # gives 0.882 <= 0.9 (kept). Keypoints given as (K, 3) arrays.
  base = np.stack([np.arange(17) * 4.0, np.arange(17) * 3.0,
                   np.ones(17)], axis=1)
  def result(moved, score):
    kp = base.copy()
    kp[:moved, 0] += 1e4
    return {'keypoints': kp, 'score': score, 'area': 5000.0}
  assert coco.oks_nms([result(0, 0.9), result(1, 0.8)], COCO_SIGMAS) == [0]
  assert coco.oks_nms([result(0, 0.9), result(2, 0.8)], COCO_SIGMAS) == [0, 1]
  # An OKS equal to the threshold is kept ("suppress if > threshold"):
  # identical instances have OKS exactly 1.
  assert coco.oks_nms([result(0, 0.9), result(0, 0.8)], COCO_SIGMAS,
                      threshold=1.0) == [0, 1]
  assert coco.oks_nms([result(0, 0.8), result(0, 0.9)], COCO_SIGMAS) == [1]


def test_oks_nms_hand_computed_single_keypoint_shift():
  # One keypoint (sigma 0.026, the nose) shifted by d, others equal, areas
  # 40 and 60 -> s^2 = 50: OKS = (16 + exp(-d^2 / (2 * 50 * 0.052^2))) / 17.
  base = np.stack([np.arange(17) * 4.0, np.arange(17) * 3.0], axis=1)
  shifted = base.copy()
  shifted[0, 0] += 0.5
  expected = (16 + math.exp(-0.25 / (2 * 50 * 0.052 ** 2))) / 17
  results = [{'keypoints': base, 'score': 0.9, 'area': 40.0},
             {'keypoints': shifted, 'score': 0.8, 'area': 60.0}]
  for threshold, keep in [(expected - 1e-9, [0]), (expected + 1e-9, [0, 1])]:
    assert coco.oks_nms(results, COCO_SIGMAS, threshold=threshold) == keep
  with pytest.raises(ValueError, match='keypoint values'):
    coco.oks_nms([{'keypoints': base[:5], 'score': 1.0, 'area': 1.0}],
                 COCO_SIGMAS)
