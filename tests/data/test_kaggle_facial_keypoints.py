"""The Kaggle facial keypoints builder on training.csv / test.csv as published."""

import ml_collections
import numpy as np
import pytest

from posejax import data
from posejax import keypoints as keypoints_lib
import dataset_fixtures
from dataset_fixtures import captured_warnings as _captured_warnings
from dataset_fixtures import kaggle_coordinates as _coordinates
from dataset_fixtures import kaggle_pixels as _pixels

NAMES = keypoints_lib.KAGGLE_FACES.keypoint_names
HEADER = dataset_fixtures.KAGGLE_HEADER


@pytest.fixture(scope='module')
def manual_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp('kaggle')
  full = {n: (10.5 + k, 20.25 + 2 * k) for k, n in enumerate(NAMES)}
  partial = {'left_eye_center': (66.03, 39.0), 'nose_tip': (48.2, 57.07)}
  grey_full, full_cell = _pixels(0)
  grey_val, val_cell = _pixels(1, held_out=True)
  cells = [_pixels(s)[1] for s in range(2, 9)]
  rows = [
      _coordinates(full) + [full_cell],                                  # 2 ok
      _coordinates(partial) + [cells[0]],                                # 3 ok, partial
      _coordinates(partial)[:-1] + [cells[1]],                           # 4 29 coords
      ['abc'] + _coordinates(partial)[1:] + [cells[2]],                  # 5 non-numeric
      _coordinates(partial) + [cells[3].rsplit(' ', 1)[0]],              # 6 9215 pixels
      _coordinates(partial) + ['300 ' + cells[4].split(' ', 1)[1]],      # 7 pixel 300
      _coordinates({'nose_tip': (500.0, 3.0)}) + [cells[5]],             # 8 far outside
      _coordinates({'nose_tip': (5.0, '')}) + [cells[6]],                # 9 half pair
      _coordinates(partial) + [val_cell],                                # 10 validation
  ]
  test_rows = [['1', _pixels(20)[1]], ['2', _pixels(21)[1]], ['x', _pixels(22)[1]],
               ['2', _pixels(23)[1]]]
  dataset_fixtures.write_kaggle_csvs(str(root), rows, test_rows)
  return str(root), dict(full=full, partial=partial, grey_full=grey_full,
                         grey_test=_pixels(21)[0])


def _config(data_dir, manual_dir):
  return ml_collections.ConfigDict(dict(
      name='kaggle_facial_keypoints', config='default', data_dir=data_dir,
      manual_dir=manual_dir, keypoints='kaggle_faces'))


@pytest.fixture(scope='module')
def built(manual_dir, tmp_path_factory):
  root, expected = manual_dir
  with _captured_warnings() as warnings:
    builder = data.get_builder(_config(str(tmp_path_factory.mktemp('tfds')), root))
  splits = {split: {int(r['image/id']): r for r in builder.as_dataset(
                split=split, shuffle_files=False).as_numpy_iterator()}
            for split in ('train', 'validation', 'test')}
  return expected, splits, warnings


def test_rows_become_faces_with_missing_points_unlabelled(built):
  expected, splits, _ = built
  assert sorted(splits['train']) == [2, 3]
  full = splits['train'][2]
  # Grey replicated to three channels, stored losslessly.
  np.testing.assert_array_equal(full['image'], np.repeat(expected['grey_full'][..., None], 3, 2))
  objs = full['objects']
  np.testing.assert_allclose(objs['keypoints'][0], [expected['full'][n] for n in NAMES])
  np.testing.assert_array_equal(objs['visibility'][0], 2)
  np.testing.assert_array_equal(objs['bbox'][0], [0, 0, 96, 96])
  assert objs['area'][0] == 96 * 96 and objs['id'][0] == 2
  partial = splits['train'][3]['objects']
  vis = partial['visibility'][0]
  assert [NAMES[k] for k in np.flatnonzero(vis)] == ['left_eye_center', 'nose_tip']
  np.testing.assert_allclose(partial['keypoints'][0, NAMES.index('nose_tip')], [48.2, 57.07],
                             rtol=1e-6)
  assert partial['num_keypoints'][0] == 2
  np.testing.assert_array_equal(partial['keypoints'][0][vis == 0], 0)


def test_validation_is_the_hashed_holdout(built):
  _, splits, _ = built
  assert sorted(splits['validation']) == [10]


def test_test_split_has_unlabelled_faces_keyed_by_image_id(built):
  expected, splits, _ = built
  assert sorted(splits['test']) == [1, 2]
  two = splits['test'][2]
  assert two['image/filename'] == b'test.csv:2'
  np.testing.assert_array_equal(two['image'][..., 1], expected['grey_test'])
  np.testing.assert_array_equal(two['objects']['visibility'], np.zeros((1, 15)))
  assert two['objects']['num_keypoints'].tolist() == [0]


def test_bad_rows_are_skipped_and_reported_with_line_and_count(built):
  _, _, warnings = built
  log = '\n'.join(warnings)
  for line, reason in [(4, 'expected 31 columns'), (5, 'non-numeric value'),
                       (6, 'image is not 96x96 pixels'),
                       (7, 'pixel values outside [0, 255]'),
                       (8, 'keypoint far outside the image'),
                       (9, 'coordinate without its pair')]:
    assert (f'training.csv (train rows): skipped 1 record(s) ({reason}), '
            f'e.g. line {line}.') in log, (reason, log)
  assert 'test.csv: skipped 1 record(s) (non-numeric ImageId), e.g. line 4.' in log
  assert 'test.csv: skipped 1 record(s) (duplicate ImageId), e.g. line 5.' in log


def test_missing_manual_dir_is_one_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match='(?s)manual_dir.*kaggle.com/c/facial-keypoints'):
    data.get_builder(_config(str(tmp_path), str(tmp_path / 'nowhere')))


def test_partial_manual_dir_names_the_missing_files(tmp_path):
  (tmp_path / 'kaggle').mkdir()
  (tmp_path / 'kaggle' / 'training.csv').write_text(','.join(HEADER) + '\n')
  with pytest.raises(FileNotFoundError, match=r"missing: \['test.csv'\]"):
    data.get_builder(_config(str(tmp_path / 'tfds'), str(tmp_path / 'kaggle')))
