"""Tests for posejax.evaluation.fashionai (FashionAI NE)."""

import numpy as np
import pytest

from posejax.evaluation import fashionai

K = 24


def _case():
  """Four garments; NE worked out in `test_ne_hand_computed`."""
  gt = np.zeros((4, K, 2))
  pred = np.zeros((4, K, 2))
  visibility = np.zeros((4, K), np.int64)
  categories = ['blouse', 'trousers', 'skirt', 'dress']

  # 0 blouse: armpits (5, 6) at (10, 10) and (50, 40): normaliser 50.
  gt[0, 5], gt[0, 6] = [10.0, 10.0], [50.0, 40.0]
  pred[0] = gt[0]
  visibility[0, [0, 1, 5, 6]] = 2
  pred[0, 0] += [3.0, 4.0]       # 5 / 50 = 0.1
  pred[0, 1] += [0.0, 10.0]      # 10 / 50 = 0.2
  visibility[0, 2] = 1           # occluded: not scored
  pred[0, 2] += [50.0, 0.0]
  pred[0, 20] += [1000.0, 0.0]   # absent (v = 0): not scored
  # blouse: (0.1 + 0.2 + 0 + 0) / 4 = 7.5 %.

  # 1 trousers: waistbands (15, 16) at (0, 0) and (20, 0): normaliser 20.
  gt[1, 16] = [20.0, 0.0]
  pred[1] = gt[1]
  visibility[1, [15, 16, 19, 20]] = 2
  pred[1, 19] += [6.0, 0.0]      # 6 / 20 = 0.3
  pred[1, 20] += [0.0, 2.0]      # 2 / 20 = 0.1
  # trousers: (0.3 + 0.1) / 4 = 10 %.

  # 2 skirt: waistband_left unlabelled, so no normaliser: skipped.
  gt[2, 16] = [20.0, 0.0]
  visibility[2, [16, 17]] = 2
  pred[2, 17] += [500.0, 0.0]

  # 3 dress: armpits at (0, 0) and (30, 40): normaliser 50; armpit_left is
  # occluded, which still gives a normaliser but is itself not scored.
  gt[3, 6] = [30.0, 40.0]
  pred[3] = gt[3]
  visibility[3, 5] = 1
  visibility[3, [0, 6, 17]] = 2
  pred[3, 0] += [6.0, 8.0]       # 10 / 50 = 0.2
  pred[3, 17] += [0.0, 25.0]     # 25 / 50 = 0.5
  pred[3, 5] += [100.0, 0.0]     # occluded: not scored
  # dress: (0.2 + 0 + 0.5) / 3 = 23.33 %.
  return pred, gt, visibility, categories


def test_ne_hand_computed():
  pred, gt, visibility, categories = _case()
  out = fashionai.fashionai_ne(pred, gt, visibility, categories)
  # Pooled over the 4 + 4 + 3 scored keypoints: (0.3 + 0.4 + 0.7) / 11.
  assert out['NE'] == pytest.approx(100.0 * 1.4 / 11)
  assert out['count'] == 11
  assert out['instances'] == 3 and out['skipped'] == 1
  per = out['per_category']
  assert set(per) == {'blouse', 'trousers', 'skirt', 'dress'}
  assert per['blouse'] == {'NE': pytest.approx(7.5), 'count': 4,
                           'instances': 1, 'skipped': 0}
  assert per['trousers'] == {'NE': pytest.approx(10.0), 'count': 4,
                             'instances': 1, 'skipped': 0}
  assert per['dress'] == {'NE': pytest.approx(100.0 * 0.7 / 3), 'count': 3,
                          'instances': 1, 'skipped': 0}
  assert np.isnan(per['skirt']['NE'])
  assert per['skirt']['count'] == 0 and per['skirt']['skipped'] == 1
  # Keypoint 0: blouse 0.1, dress 0.2. Keypoint 17: the skirt's is skipped.
  assert out['per_keypoint'][0] == pytest.approx(15.0)
  assert out['per_keypoint'][17] == pytest.approx(50.0)
  assert np.isnan(out['per_keypoint'][2])  # only ever occluded


def test_pooled_not_mean_of_categories():
  pred, gt, visibility, categories = _case()
  out = fashionai.fashionai_ne(pred, gt, visibility, categories)
  means = [out['per_category'][c]['NE'] for c in ('blouse', 'trousers',
                                                   'dress')]
  assert out['NE'] != pytest.approx(np.mean(means))


def test_zero_normaliser_is_skipped_and_bytes_accepted():
  pred, gt, visibility, categories = _case()
  gt[0, 6] = gt[0, 5]  # coincident armpits: no scale
  out = fashionai.fashionai_ne(pred, gt, visibility,
                               np.array([c.encode() for c in categories]))
  assert out['per_category']['blouse']['skipped'] == 1
  assert out['skipped'] == 2 and out['count'] == 7
  assert out['NE'] == pytest.approx(100.0 * 1.1 / 7)


def test_normaliser_uses_ground_truth_not_prediction():
  pred, gt, visibility, categories = _case()
  pred[1, 16] = [2000.0, 0.0]  # a wild waistband prediction: 1980 / 20
  out = fashionai.fashionai_ne(pred, gt, visibility, categories)
  assert out['per_category']['trousers']['NE'] == pytest.approx(
      100.0 * (0.4 + 99.0) / 4)


def test_non_finite_prediction():
  pred, gt, visibility, categories = _case()
  pred[0, 20] = np.nan  # absent keypoint: ignored
  fashionai.fashionai_ne(pred, gt, visibility, categories)
  pred[0, 0] = np.nan
  with pytest.raises(ValueError, match='instance 0 keypoint 0'):
    fashionai.fashionai_ne(pred, gt, visibility, categories)


def test_errors():
  pred, gt, visibility, categories = _case()
  with pytest.raises(ValueError, match='unknown categories'):
    fashionai.fashionai_ne(pred, gt, visibility,
                           ['blouse', 'hat', 'skirt', 'dress'])
  with pytest.raises(ValueError, match='expects'):
    fashionai.fashionai_ne(pred, gt, visibility, categories[:3])
  with pytest.raises(ValueError, match='expects'):
    fashionai.fashionai_ne(pred[:, :23], gt, visibility, categories)
  with pytest.raises(ValueError, match='do not fit'):
    fashionai.fashionai_ne(pred[:, :10], gt[:, :10], visibility[:, :10],
                           categories)


def test_custom_normaliser_pairs():
  gt = np.array([[[0.0, 0.0], [0.0, 8.0], [4.0, 4.0]]])
  pred = gt + np.array([[[0.0, 0.0], [0.0, 0.0], [2.0, 0.0]]])
  out = fashionai.fashionai_ne(pred, gt, np.full((1, 3), 2), ['toy'],
                               normaliser_pairs={'toy': (0, 1)})
  # (0 + 0 + 2 / 8) / 3
  assert out['NE'] == pytest.approx(100.0 * 0.25 / 3)
