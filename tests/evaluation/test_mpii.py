"""Tests for posejax.evaluation.mpii (MPII PCKh)."""

import numpy as np
import pytest

from posejax.evaluation import mpii

K = 16


def _case():
  """Two people; hand-computed PCKh in the tests below.

  Instance 0: head box 30 x 40 -> diagonal 50 -> head size 30, so the
  tolerance is 15 px at 0.5 and 3 px at 0.1. Instance 1: head box 60 x 80 ->
  diagonal 100 -> head size 60: 30 px at 0.5, 6 px at 0.1.
  """
  rng = np.random.default_rng(0)
  # Integer positions keep pred - gt exact, so the boundaries are exact.
  gt = rng.integers(0, 200, size=(2, K, 2)).astype(np.float64)
  pred = gt.copy()
  visibility = np.full((2, K), 2)
  head_boxes = np.array([[10.0, 20.0, 40.0, 60.0], [0.0, 0.0, 60.0, 80.0]])

  visibility[0, 0] = 0            # r_ankle unlabelled: its error is ignored
  pred[0, 0] += [1000.0, 0.0]
  visibility[0, 5] = 1            # l_ankle occluded but labelled: counts
  pred[0, 9] += [9.0, 12.0]       # head_top 15 px: on the 0.5 boundary
  pred[0, 13] += [1.5, 2.0]       # l_shoulder 2.5 px: correct at 0.5 and 0.1
  pred[0, 12] += [0.0, 16.0]      # r_shoulder 16 px: wrong at both
  pred[0, 7] += [100.0, 0.0]      # thorax wrong (only in Mean_all)

  visibility[1, 9] = 0            # head_top unlabelled
  pred[1, 9] += [1000.0, 0.0]
  visibility[1, 7] = 0            # thorax unlabelled
  pred[1, 13] += [18.0, 24.0]     # l_shoulder 30 px: on the 0.5 boundary
  pred[1, 12] += [3.0, 4.0]       # r_shoulder 5 px: correct at 0.5 and 0.1
  pred[1, 15] += [31.0, 0.0]      # l_wrist 31 px: wrong at both
  pred[1, 6] += [0.0, 40.0]       # pelvis wrong (only in Mean_all)
  return pred, gt, visibility, head_boxes


def test_head_size_is_0_6_times_diagonal():
  boxes = np.array([[10.0, 20.0, 40.0, 60.0], [40.0, 60.0, 10.0, 20.0],
                    [0.0, 0.0, 60.0, 80.0]])
  np.testing.assert_allclose(mpii.head_size(boxes), [30.0, 30.0, 60.0])
  with pytest.raises(ValueError, match=r'\(N, 4\)'):
    mpii.head_size(np.zeros((2, 3)))


def test_pckh_at_0_5_hand_computed():
  pred, gt, visibility, boxes = _case()
  out = mpii.pckh(pred, gt, visibility, boxes, 0.5)
  # Per joint: pelvis (6) 1/2, thorax (7) 0/1, r_shoulder (12) 1/2,
  # l_wrist (15) 1/2; every other joint all correct (r_ankle and head_top
  # each counted once, on the instance where they are labelled).
  expected = np.full(K, 100.0)
  expected[[6, 12, 15]] = 50.0
  expected[7] = 0.0
  np.testing.assert_allclose(out['per_joint'], expected)
  assert out['Head'] == pytest.approx(100.0)
  assert out['Shoulder'] == pytest.approx(75.0)    # (100 + 50) / 2
  assert out['Wrist'] == pytest.approx(75.0)       # (l 50 + r 100) / 2
  for group in ('Elbow', 'Hip', 'Knee', 'Ankle'):
    assert out[group] == pytest.approx(100.0)
  # Labelled: 15 + 14 = 29 joints; without pelvis and thorax 13 + 13 = 26.
  assert out['count_all'] == 29 and out['count'] == 26
  # Wrong in the official mean: r_shoulder (0), l_wrist (1).
  assert out['Mean'] == pytest.approx(100.0 * 24 / 26)
  # Plus thorax (0) and pelvis (1) over all 16 joints.
  assert out['Mean_all'] == pytest.approx(100.0 * 25 / 29)


def test_pckh_at_0_1_hand_computed():
  pred, gt, visibility, boxes = _case()
  out = mpii.pckh(pred, gt, visibility, boxes, 0.1)
  # Newly wrong at 0.1: head_top (0, 15 > 3), l_shoulder (1, 30 > 6).
  assert out['Head'] == pytest.approx(0.0)
  assert out['Shoulder'] == pytest.approx(50.0)    # l 1/2, r 1/2
  assert out['Wrist'] == pytest.approx(75.0)
  assert out['per_joint'][6] == pytest.approx(50.0)
  assert out['Mean'] == pytest.approx(100.0 * 22 / 26)
  assert out['Mean_all'] == pytest.approx(100.0 * 23 / 29)


def test_mpii_pckh_keys_and_thresholds():
  pred, gt, visibility, boxes = _case()
  out = mpii.mpii_pckh(pred, gt, visibility, boxes)
  assert set(out) == {'PCKh@0.5', 'PCKh@0.1'}
  assert out['PCKh@0.5']['Mean'] == pytest.approx(100.0 * 24 / 26)
  assert out['PCKh@0.1']['Mean'] == pytest.approx(100.0 * 22 / 26)
  out = mpii.mpii_pckh(pred, gt, visibility, boxes, thresholds=(0.11,))
  assert set(out) == {'PCKh@0.11'}


def test_boundary_is_inclusive():
  pred, gt, visibility, boxes = _case()
  # At exactly 0.5 x head size both are correct (Head 100, Shoulder 75 in
  # the test above); just past it head_top (0) and l_shoulder (1) are wrong.
  pred[0, 9] = gt[0, 9] + [9.0, 12.001]
  pred[1, 13] = gt[1, 13] + [18.0, 24.001]
  out = mpii.pckh(pred, gt, visibility, boxes, 0.5)
  assert out['Head'] == pytest.approx(0.0)
  assert out['Shoulder'] == pytest.approx(50.0)    # l 1/2, r 1/2
  assert out['Mean'] == pytest.approx(100.0 * 22 / 26)


def _official_style(pred, gt, visibility, boxes, threshold):
  """The official PCKh written out independently: error / head size,
  count-weighted mean over the 14 joints other than pelvis and thorax."""
  sizes = 0.6 * np.linalg.norm(boxes[:, 2:] - boxes[:, :2], axis=1)
  scaled = np.linalg.norm(pred - gt, axis=-1) / sizes[:, None]
  labelled = visibility > 0
  count = labelled.sum(axis=0)
  per_joint = 100.0 * ((scaled <= threshold) & labelled).sum(axis=0) / count
  keep = np.ones(K, bool)
  keep[[6, 7]] = False
  ratio = count[keep] / count[keep].sum()
  mean = np.sum(per_joint[keep] * ratio)
  shoulder = 0.5 * (per_joint[13] + per_joint[12])
  return per_joint, mean, shoulder


def test_matches_official_formula_on_random_data():
  rng = np.random.default_rng(1)
  n = 50
  gt = rng.uniform(0, 300, size=(n, K, 2))
  pred = gt + rng.normal(scale=8.0, size=gt.shape)
  visibility = rng.choice([0, 1, 2], size=(n, K), p=[0.1, 0.2, 0.7])
  corner = rng.uniform(0, 200, size=(n, 2))
  boxes = np.concatenate([corner, corner + rng.uniform(20, 60, (n, 2))], 1)
  for threshold in (0.5, 0.1):
    out = mpii.pckh(pred, gt, visibility, boxes, threshold)
    per_joint, mean, shoulder = _official_style(pred, gt, visibility, boxes,
                                                threshold)
    np.testing.assert_allclose(out['per_joint'], per_joint)
    assert out['Mean'] == pytest.approx(mean)
    assert out['Shoulder'] == pytest.approx(shoulder)


def test_errors():
  pred, gt, visibility, boxes = _case()
  with pytest.raises(ValueError, match=r'\(N, 4\)'):
    mpii.pckh(pred, gt, visibility, boxes[:, :3])
  with pytest.raises(ValueError, match='same'):
    mpii.pckh(pred, gt, visibility, boxes[:1])
  with pytest.raises(ValueError, match='expects'):
    mpii.pckh(pred[:, :15], gt, visibility, boxes)
  with pytest.raises(ValueError, match='joint indices'):
    mpii.pckh(pred[:, :8], gt[:, :8], visibility[:, :8], boxes)
  zero = boxes.copy()
  zero[1] = [5.0, 5.0, 5.0, 5.0]  # zero head size with labelled joints
  with pytest.raises(ValueError, match='normaliser'):
    mpii.pckh(pred, gt, visibility, zero)


def test_custom_groups_for_another_layout():
  gt = np.zeros((1, 3, 2))
  pred = gt + np.array([[[0.0, 0.0], [20.0, 0.0], [0.0, 0.0]]])
  boxes = np.array([[0.0, 0.0, 30.0, 40.0]])  # head size 30 -> 15 px
  out = mpii.pckh(pred, gt, np.full((1, 3), 2), boxes, 0.5,
                  groups={'pair': (0, 1), 'last': (2,)}, mean_excluded=(2,))
  assert out['pair'] == pytest.approx(50.0) and out['last'] == 100.0
  assert out['Mean'] == pytest.approx(50.0) and out['count'] == 2
  assert out['Mean_all'] == pytest.approx(200.0 / 3)
