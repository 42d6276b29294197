"""Tests for posejax.evaluation.pck."""

import numpy as np
import pytest

from posejax.evaluation import pck as pck_lib


def _case():
  gt = np.zeros((2, 3, 2))
  gt[1] = 100.0
  pred = gt.copy()
  pred[0, 0] += [3.0, 4.0]        # distance 5 == 0.5 * 10: on the boundary
  pred[0, 1] += [5.0001, 0.0]     # just outside
  pred[0, 2] += [1000.0, 0.0]     # unlabelled: must not count
  pred[1, 0] += [0.0, 9.0]        # 9 <= 0.5 * 20
  pred[1, 1] += [0.0, 0.0]        # occluded (v=1) still counts
  pred[1, 2] += [0.0, 0.0]        # unlabelled
  visibility = np.array([[2, 2, 0], [2, 1, 0]])
  return pred, gt, visibility


def test_pck_hand_computed():
  pred, gt, visibility = _case()
  out = pck_lib.pck(pred, gt, visibility, np.array([10.0, 20.0]), 0.5)
  assert out['count'] == 4
  assert out['mean'] == pytest.approx(3 / 4)
  np.testing.assert_array_equal(out['per_keypoint'][:2], [1.0, 0.5])
  assert np.isnan(out['per_keypoint'][2])


def test_pck_threshold_scales_with_normaliser():
  pred, gt, visibility = _case()
  # Halving instance 1's normaliser moves its 9 px error out (9 > 0.5 * 10).
  out = pck_lib.pck(pred, gt, visibility, np.array([10.0, 10.0]), 0.5)
  np.testing.assert_array_equal(out['per_keypoint'][:2], [0.5, 0.5])
  assert out['mean'] == pytest.approx(2 / 4)


def test_pck_nothing_counted_and_non_finite():
  pred, gt, _ = _case()
  out = pck_lib.pck(pred, gt, np.zeros((2, 3)), np.ones(2), 0.5)
  assert out['count'] == 0 and np.isnan(out['mean'])
  assert np.isnan(out['per_keypoint']).all()
  pred[1, 1] = np.nan
  out = pck_lib.pck(pred, gt, np.full((2, 3), 2), np.full(2, 1e6), 0.5)
  assert out['mean'] == pytest.approx(5 / 6)


def test_pck_rejects_bad_normaliser_and_shapes():
  pred, gt, visibility = _case()
  with pytest.raises(ValueError, match='normaliser'):
    pck_lib.pck(pred, gt, visibility, np.array([10.0, 0.0]), 0.5)
  with pytest.raises(ValueError, match='expects'):
    pck_lib.pck(pred, gt[:, :2], visibility, np.array([10.0, 20.0]), 0.5)


def test_box_pck_uses_longer_side():
  gt = np.zeros((1, 2, 2))
  pred = gt + np.array([[[9.0, 0.0], [11.0, 0.0]]])
  boxes = np.array([[5.0, 5.0, 40.0, 100.0]])  # max(w, h) = 100 -> 10 px
  out = pck_lib.box_pck(pred, gt, np.full((1, 2), 2), boxes)
  np.testing.assert_array_equal(out['per_keypoint'], [1.0, 0.0])
  assert out['mean'] == 0.5 and out['count'] == 2
  wide = np.array([[5.0, 5.0, 120.0, 30.0]])  # 12 px: both correct
  assert pck_lib.box_pck(pred, gt, np.full((1, 2), 2), wide)['mean'] == 1.0
