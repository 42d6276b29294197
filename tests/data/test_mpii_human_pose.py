"""The MPII builder on files written in the HRNet json + gt_valid.mat layout."""

import os

import ml_collections
import numpy as np
import pytest
import scipy.io

from posejax import data
from posejax.data import mpii_human_pose
import dataset_fixtures
from dataset_fixtures import captured_warnings as _captured_warnings
from dataset_fixtures import mpii_entry as _entry

H, W = 48, 64


def _joints(seed):
  """16 joints in 1-based pixels inside a 64x48 image, and their flags."""
  rng = np.random.default_rng(seed)
  joints = np.round(rng.uniform([1, 1], [W, H], (16, 2)), 1)
  vis = np.ones(16, int)
  vis[[3, 9]] = 0
  joints[vis == 0] = -1.0  # how the json marks unlabelled joints
  return joints, vis


def _write_mpii(root):
  for seed, name in enumerate(('000000001.jpg', '000000002.jpg')):
    dataset_fixtures.write_image(os.path.join(root, 'images', name), H, W, seed=seed)
  with open(os.path.join(root, 'images', '000000003.jpg'), 'wb') as f:
    f.write(b'not a jpeg')

  j0, v0 = _joints(0)
  j1, v1 = _joints(1)
  j4, v4 = _joints(4)
  far = j4.copy()
  far[0] = [10_000.0, 5.0]
  valid = [
      _entry('000000001.jpg', j0, v0, center=(31.0, 21.0), scale=0.25),   # 0 ok
      _entry('000000001.jpg', j1, v1, center=(11.0, 13.0), scale=0.1),    # 1 ok
      {**_entry('000000002.jpg', j4, v4), 'joints': [['x', 1]] * 16},     # 2 non-numeric
      _entry('000000002.jpg', j4, v4, scale=0.0),                         # 3 zero-area
      _entry('000000002.jpg', j4, v4),                                    # 4 ok, mat differs
      _entry('000000003.jpg', j0, v0),                                    # 5 corrupt image
      _entry('000000009.jpg', j0, v0),                                    # 6 missing image
      _entry('000000002.jpg', far, v4),                                   # 7 far outside
      _entry('000000002.jpg', j4[:15], v4[:15]),                          # 8 wrong K
  ]
  train = [_entry('000000002.jpg', j1, v1), _entry('000000001.jpg', j0, v0)]
  dataset_fixtures.write_mpii_json(root, 'mpii_valid.json', valid)
  dataset_fixtures.write_mpii_json(root, 'mpii_train.json', train)

  # gt_valid.mat as the HRNet repository ships it: one column per json entry.
  n = len(valid)
  heads = np.zeros((2, 2, n))
  pos = np.zeros((16, 2, n))
  missing = np.ones((16, n))
  for i, entry in enumerate(valid):
    heads[:, :, i] = [[10 + i, 5 + i], [20 + 2 * i, 17 + i]]  # [corner, xy]
    joints = np.asarray(j0 if i in (0, 5, 6) else j1 if i == 1 else j4)
    vis = v0 if i in (0, 5, 6) else v1 if i == 1 else v4
    pos[:, :, i] = joints
    missing[:, i] = 1 - vis
  pos[5, :, 4] += 7.0  # entry 4's joints disagree with the json
  dataset_fixtures.write_gt_valid_mat(
      os.path.join(root, 'annot', 'gt_valid.mat'), heads, pos, missing)
  return valid


def _config(data_dir, manual_dir):
  return ml_collections.ConfigDict(dict(
      name='mpii_human_pose', config='default', data_dir=data_dir,
      manual_dir=manual_dir, keypoints='mpii'))


@pytest.fixture(scope='module')
def built(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('mpii'))
  valid = _write_mpii(root)
  with _captured_warnings() as warnings:
    builder = data.get_builder(_config(str(tmp_path_factory.mktemp('tfds')), root))
  by_split = {
      split: {r['image/filename'].decode(): r for r in builder.as_dataset(
          split=split, shuffle_files=False).as_numpy_iterator()}
      for split in ('train', 'validation')}
  return valid, by_split, warnings


def test_joints_become_0_based_with_coco_visibility(built):
  valid, splits, _ = built
  objs = splits['validation']['000000001.jpg']['objects']
  np.testing.assert_array_equal(objs['id'], [1, 2])
  for n, entry in enumerate(valid[:2]):
    joints, vis = np.asarray(entry['joints']), np.asarray(entry['joints_vis'])
    np.testing.assert_array_equal(objs['visibility'][n], np.where(vis > 0, 2, 0))
    np.testing.assert_allclose(objs['keypoints'][n][vis > 0], joints[vis > 0] - 1.0,
                               atol=1e-5)
    np.testing.assert_array_equal(objs['keypoints'][n][vis == 0], 0.0)
    assert objs['num_keypoints'][n] == 14
  np.testing.assert_array_equal(objs['iscrowd'], [0, 0])


def test_box_is_scale_times_200_around_the_0_based_centre(built):
  _, splits, _ = built
  objs = splits['validation']['000000001.jpg']['objects']
  np.testing.assert_allclose(objs['center'][0], [30.0, 20.0])
  np.testing.assert_allclose(objs['scale'], [0.25, 0.1])
  np.testing.assert_allclose(objs['bbox'][0], [30 - 25, 20 - 25, 50, 50])
  np.testing.assert_allclose(objs['bbox'][1], [10 - 10, 12 - 10, 20, 20], atol=1e-5)
  np.testing.assert_allclose(objs['area'], [2500, 400], rtol=1e-5)


def test_head_boxes_come_from_gt_valid_mat_in_entry_order(built):
  _, splits, _ = built
  objs = splits['validation']['000000001.jpg']['objects']
  # Entry i has 1-based head box (10+i, 5+i)-(20+2i, 17+i).
  np.testing.assert_allclose(objs['head_box'][0], [9, 4, 19, 16])
  np.testing.assert_allclose(objs['head_box'][1], [10, 5, 21, 17])
  # Entry 4's joints differ from pos_gt_src: its head box is not trusted.
  other = splits['validation']['000000002.jpg']['objects']
  np.testing.assert_array_equal(other['id'], [5])
  assert np.all(np.isnan(other['head_box']))
  # The train split has no head boxes.
  for record in splits['train'].values():
    assert np.all(np.isnan(record['objects']['head_box']))


def test_bad_entries_and_images_are_skipped_and_reported(built):
  _, splits, warnings = built
  assert sorted(splits['validation']) == ['000000001.jpg', '000000002.jpg']
  assert sorted(splits['train']) == ['000000001.jpg', '000000002.jpg']
  log = '\n'.join(warnings)
  expected = [
      'skipped 1 record(s) (non-numeric value), e.g. 000000002.jpg (entry 2)',
      'skipped 1 record(s) (zero-area box), e.g. 000000002.jpg (entry 3)',
      'skipped 1 record(s) (undecodable image), e.g. 000000003.jpg (entry 5)',
      'skipped 1 record(s) (missing image), e.g. 000000009.jpg (entry 6)',
      'skipped 1 record(s) (keypoint far outside the image), e.g. 000000002.jpg (entry 7)',
      'skipped 1 record(s) (expected 16 joints), e.g. 000000002.jpg (entry 8)',
  ]
  for line in expected:
    assert f'annot/mpii_valid.json: {line}' in log
  assert 'differ from pos_gt_src' in log and 'e.g. entry 4' in log
  assert 'mpii_train.json: skipped' not in log


def test_missing_head_box_file_gives_nan_and_a_warning(tmp_path, caplog):
  entries = [_entry('a.jpg', *_joints(0))]
  boxes = mpii_human_pose._load_head_boxes(str(tmp_path / 'gt_valid.mat'), entries)
  assert boxes.shape == (1, 4) and np.all(np.isnan(boxes))
  assert 'gt_valid.mat not found' in caplog.text and 'PCKh' in caplog.text
  # A .mat for a different number of people is not used either.
  scipy.io.savemat(str(tmp_path / 'other.mat'), {'headboxes_src': np.zeros((2, 2, 3))})
  boxes = mpii_human_pose._load_head_boxes(str(tmp_path / 'other.mat'), entries)
  assert np.all(np.isnan(boxes)) and 'expected (2, 2, 1)' in caplog.text
  # Nor does an unreadable one stop the build.
  (tmp_path / 'broken.mat').write_bytes(b'MATLAB 5.0 MAT-file, truncated')
  boxes = mpii_human_pose._load_head_boxes(str(tmp_path / 'broken.mat'), entries)
  assert np.all(np.isnan(boxes)) and 'cannot read' in caplog.text


def test_missing_manual_dir_is_one_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match='(?s)manual_dir.*human-pose.mpi-inf.mpg.de'):
    data.get_builder(_config(str(tmp_path), str(tmp_path / 'nowhere')))


def test_partial_manual_dir_names_the_missing_files(tmp_path):
  manual = tmp_path / 'mpii'
  (manual / 'annot').mkdir(parents=True)
  (manual / 'annot' / 'mpii_train.json').write_text('[]')
  with pytest.raises(FileNotFoundError,
                     match=r"(?s)missing: \['annot/mpii_valid.json', 'images'\].*HRNet"):
    data.get_builder(_config(str(tmp_path / 'tfds'), str(manual)))


def test_keypoint_layout_comes_from_the_builder(tmp_path):
  from posejax import keypoints
  builder = data.get_builder(_config(str(tmp_path), str(tmp_path)), prepare=False)
  assert data.keypoint_spec(builder) is keypoints.MPII
  assert type(builder).METRIC == 'pckh' and type(builder).EVAL_EXTRAS == ('head_box',)
