"""Tests for posejax.evaluation.faces (NME, failure rate, AUC, Kaggle RMSE)."""

import numpy as np
import pytest

from posejax.evaluation import faces


def _case():
  """Four 4-landmark faces, normalised by landmarks 0 and 1.

  face 0: d = 10, errors 0, 0, 2, 2    -> 4 / (4 * 10)  = 0.1 (boundary)
  face 1: d = 20, errors 1, 0, 0, 5    -> 6 / (4 * 20)  = 0.075
  face 2: d = 10, errors all 0         -> 0
  face 3: d = 10, errors 10 each       -> 40 / (4 * 10) = 1.0
  """
  gt = np.array([[[0.0, 0.0], [10.0, 0.0], [5.0, 5.0], [5.0, 10.0]]] * 4)
  gt[1, 1] = [20.0, 0.0]
  pred = gt.copy()
  pred[0, 2] += [2.0, 0.0]
  pred[0, 3] += [0.0, -2.0]
  pred[1, 0] += [0.0, 1.0]
  pred[1, 3] += [3.0, 4.0]
  pred[3] += [6.0, 8.0]
  return pred, gt


def test_per_face_nme_hand_computed():
  pred, gt = _case()
  nme = faces.per_face_nme(pred, gt, eye_corners=(0, 1))
  np.testing.assert_allclose(nme, [0.1, 0.075, 0.0, 1.0])


def test_face_nme_summary_hand_computed():
  pred, gt = _case()
  out = faces.face_nme(pred, gt, eye_corners=(0, 1))
  assert out['nme'] == pytest.approx((0.1 + 0.075 + 0.0 + 1.0) / 4)
  # Only face 3 fails: face 0 sits at exactly 0.1, which is not > 0.1.
  assert out['failure_rate'] == pytest.approx(0.25)
  # AUC: each face adds max(0, 1 - nme / 0.1): 0 + 0.25 + 1 + 0, over 4.
  assert out['auc'] == pytest.approx(0.3125)
  assert out['count'] == 4 and out['subsets'] == {}
  np.testing.assert_allclose(out['per_face'], [0.1, 0.075, 0.0, 1.0])


def test_auc_matches_fine_grid_integral():
  nme = np.array([0.1, 0.075, 0.0, 1.0, 0.031, 0.0999])
  grid = np.linspace(0.0, 0.1, 100001)
  ced = (nme[None, :] <= grid[:, None]).mean(axis=1)
  numeric = np.sum((ced[1:] + ced[:-1]) / 2 * np.diff(grid)) / 0.1
  assert faces.ced_auc(nme) == pytest.approx(numeric, abs=1e-4)
  # Worked by hand: 0.25 + 1 + 0.69 + 0.001 = 1.941 over 6 faces.
  assert faces.ced_auc(nme) == pytest.approx(1.941 / 6)
  assert faces.ced_auc(np.zeros(3)) == 1.0
  assert faces.ced_auc(np.full(3, 0.2)) == 0.0
  assert faces.ced_auc(nme, threshold=0.2) == pytest.approx(
      np.mean(np.maximum(0, 1 - nme / 0.2)))


def test_failure_rate_boundary():
  assert faces.failure_rate(np.array([0.1, 0.1000001, 0.05])) == \
      pytest.approx(1 / 3)
  assert faces.failure_rate(np.array([0.07, 0.09]), threshold=0.08) == 0.5
  assert np.isnan(faces.failure_rate(np.zeros(0)))


def test_subsets():
  pred, gt = _case()
  out = faces.face_nme(pred, gt, eye_corners=(0, 1), subsets={
      'first_two': np.array([True, True, False, False]),
      'last': np.array([False, False, False, True]),
      'none': np.zeros(4, bool),
  })
  first = out['subsets']['first_two']
  assert first['nme'] == pytest.approx(0.0875)
  assert first['failure_rate'] == 0.0
  assert first['auc'] == pytest.approx(0.125)  # (0 + 0.25) / 2
  assert first['count'] == 2
  assert out['subsets']['last'] == {'nme': 1.0, 'failure_rate': 1.0,
                                    'auc': 0.0, 'count': 1}
  assert out['subsets']['none']['count'] == 0
  assert np.isnan(out['subsets']['none']['nme'])
  with pytest.raises(ValueError, match='boolean mask'):
    faces.face_nme(pred, gt, eye_corners=(0, 1),
                   subsets={'bad': np.array([1, 0, 1, 0])})
  with pytest.raises(ValueError, match='boolean mask'):
    faces.face_nme(pred, gt, eye_corners=(0, 1),
                   subsets={'bad': np.ones(3, bool)})


@pytest.mark.parametrize('k, corners', [(68, (36, 45)), (98, (60, 72))])
def test_default_eye_corners_by_layout(k, corners):
  rng = np.random.default_rng(k)
  gt = rng.integers(0, 100, size=(1, k, 2)).astype(np.float64)
  gt[0, corners[0]] = [20.0, 50.0]
  gt[0, corners[1]] = [80.0, 50.0]  # inter-ocular 60
  pred = gt.copy()
  pred[0, 10] += [0.0, 30.0]
  assert faces.per_face_nme(pred, gt)[0] == pytest.approx(30.0 / (k * 60.0))


def test_visibility_ignores_unlabelled_landmarks():
  pred, gt = _case()
  visibility = np.full((4, 4), 2)
  visibility[1, 3] = 0  # face 1 loses its 5 px error: 1 / (3 * 20)
  visibility[0, 2] = 1  # occluded still counts
  nme = faces.per_face_nme(pred, gt, (0, 1), visibility)
  np.testing.assert_allclose(nme, [0.1, 1.0 / 60.0, 0.0, 1.0])
  visibility[2, 1] = 0  # an unlabelled eye corner leaves no normaliser
  with pytest.raises(ValueError, match='face 2'):
    faces.per_face_nme(pred, gt, (0, 1), visibility)


def test_nme_errors():
  pred, gt = _case()
  with pytest.raises(ValueError, match='no default eye corners'):
    faces.per_face_nme(pred, gt)
  with pytest.raises(ValueError, match='out of range'):
    faces.per_face_nme(pred, gt, (0, 4))
  with pytest.raises(ValueError, match='expects'):
    faces.per_face_nme(pred[:, :3], gt, (0, 1))
  with pytest.raises(ValueError, match='visibility'):
    faces.per_face_nme(pred, gt, (0, 1), np.ones((4, 3)))
  with pytest.raises(ValueError, match='inter-ocular'):
    faces.per_face_nme(pred, gt, (2, 2))  # coincident corners
  pred[1, 2] = np.inf
  with pytest.raises(ValueError, match='face 1'):
    faces.per_face_nme(pred, gt, (0, 1))


def test_kaggle_rmse_hand_computed():
  gt = np.array([[[30.0, 40.0], [60.0, 40.0]],
                 [[20.0, 70.0], [50.0, 50.0]]])
  pred = gt.copy()
  pred[0, 0] += [3.0, 4.0]        # 9 + 16
  pred[0, 1] += [100.0, 0.0]      # unlabelled: ignored
  pred[1, 1] += [1.0, -1.0]       # 1 + 1
  visibility = np.array([[2, 0], [2, 1]])
  out = faces.kaggle_rmse(pred, gt, visibility)
  # 3 labelled keypoints = 6 coordinates: sqrt((25 + 0 + 2) / 6).
  assert out['count'] == 6
  assert out['rmse'] == pytest.approx(np.sqrt(27 / 6))
  # Keypoint 0: sqrt(25 / 4) = 2.5; keypoint 1: sqrt(2 / 2) = 1.
  np.testing.assert_allclose(out['per_keypoint'], [2.5, 1.0])
  pred[0, 1] = np.nan  # still unlabelled: fine
  assert faces.kaggle_rmse(pred, gt, visibility)['rmse'] == out['rmse']


def test_kaggle_rmse_edge_cases():
  gt = np.zeros((1, 2, 2))
  out = faces.kaggle_rmse(gt + 1.0, gt, np.zeros((1, 2)))
  assert out['count'] == 0 and np.isnan(out['rmse'])
  assert np.isnan(out['per_keypoint']).all()
  with pytest.raises(ValueError, match='visibility'):
    faces.kaggle_rmse(gt, gt, np.zeros((1, 3)))
  with pytest.raises(ValueError, match='expects'):
    faces.kaggle_rmse(gt, gt[:, :1], np.zeros((1, 2)))
  pred = gt.copy()
  pred[0, 1] = np.nan
  with pytest.raises(ValueError, match='keypoint 1'):
    faces.kaggle_rmse(pred, gt, np.full((1, 2), 2))
