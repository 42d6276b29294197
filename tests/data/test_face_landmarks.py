"""The WFLW and 300W builders on files written in their published layouts."""

import os

import ml_collections
import numpy as np
import pytest

from posejax import data
import dataset_fixtures
from dataset_fixtures import captured_warnings as _captured_warnings
from dataset_fixtures import pts_text as _pts_text
from dataset_fixtures import wflw_line as _wflw_line

H, W = 60, 80


def _image(path, value=90):
  dataset_fixtures.write_image(path, H, W, value=value)


def _points(k, seed):
  rng = np.random.default_rng(seed)
  return np.round(rng.uniform([5, 4], [W - 5, H - 4], (k, 2)), 3)


def _config(name, data_dir, manual_dir, keypoints):
  return ml_collections.ConfigDict(dict(
      name=name, config='default', data_dir=data_dir, manual_dir=manual_dir,
      keypoints=keypoints))


def _read(builder, splits):
  return {split: {r['image/filename'].decode(): r for r in builder.as_dataset(
              split=split, shuffle_files=False).as_numpy_iterator()}
          for split in splits}


# ------------------------------------------------------------------- WFLW

LISTS = dataset_fixtures.WFLW_LISTS


@pytest.fixture(scope='module')
def wflw(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('wflw'))
  images = os.path.join(root, 'WFLW_images')
  _image(os.path.join(images, '0--Parade', 'a.jpg'))
  _image(os.path.join(images, '1--Handshaking', 'b.jpg'))
  _image(os.path.join(images, '2--Demonstration', 'c.jpg'))
  p = [_points(98, s) for s in range(10)]
  good = _wflw_line(p[3], [4, 3, 70, 50], [0, 0, 0, 0, 0, 0], '1--Handshaking/b.jpg')
  train = [
      _wflw_line(p[0], [3, 2, 60, 50], [1, 0, 1, 0, 1, 0], '0--Parade/a.jpg'),     # 1
      _wflw_line(p[1], [10, 12, 40, 30], [0, 1, 0, 1, 0, 1], '0--Parade/a.jpg'),   # 2
      good,                                                                       # 3
      good.rsplit(' ', 2)[0] + ' 1--Handshaking/b.jpg',                           # 4 206 fields
      ' '.join(good.split()[:7] + ['1.5e'] + good.split()[8:]),                  # 5 non-numeric
      _wflw_line(p[4], [4, 3, 70, 50], [0, 2, 0, 0, 0, 0], '1--Handshaking/b.jpg'),  # 6 flag 2
      _wflw_line(p[5], [4, 3, 70, 50], [0, 0, 0, 0, 0, 0], '9--Press/none.jpg'),     # 7 no image
      _wflw_line(p[6], [4, 3, 4, 50], [0, 0, 0, 0, 0, 0], '1--Handshaking/b.jpg'),   # 8 zero width
      _wflw_line(p[7] * 10, [4, 3, 70, 50], [0, 0, 0, 0, 0, 0], '1--Handshaking/b.jpg'),  # 9 far
  ]
  test = [_wflw_line(p[8], [1, 1, 79, 59], [0, 0, 0, 0, 1, 1], '2--Demonstration/c.jpg')]
  dataset_fixtures.write_wflw_lists(root, train, test)
  with _captured_warnings() as warnings:
    builder = data.get_builder(
        _config('wflw', str(tmp_path_factory.mktemp('tfds')), root, 'wflw'))
  return p, _read(builder, ('train', 'test')), warnings


def test_wflw_faces_keep_coordinates_rectangles_and_attributes(wflw):
  p, splits, _ = wflw
  assert sorted(splits['train']) == ['0--Parade/a.jpg', '1--Handshaking/b.jpg']
  a = splits['train']['0--Parade/a.jpg']
  assert a['image'].shape == (H, W, 3) and a['image/id'] == 1
  objs = a['objects']
  np.testing.assert_array_equal(objs['id'], [1, 2])
  np.testing.assert_allclose(objs['keypoints'][0], p[0], atol=1e-5)  # used as given
  np.testing.assert_allclose(objs['keypoints'][1], p[1], atol=1e-5)
  np.testing.assert_array_equal(objs['visibility'], 2)
  np.testing.assert_array_equal(objs['bbox'], [[3, 2, 57, 48], [10, 12, 30, 18]])
  np.testing.assert_array_equal(objs['area'], [57 * 48, 30 * 18])
  np.testing.assert_array_equal(objs['attributes'], [[1, 0, 1, 0, 1, 0], [0, 1, 0, 1, 0, 1]])
  np.testing.assert_array_equal(objs['num_keypoints'], [98, 98])
  b = splits['train']['1--Handshaking/b.jpg']['objects']
  np.testing.assert_array_equal(b['id'], [3])
  test = splits['test']['2--Demonstration/c.jpg']['objects']
  np.testing.assert_array_equal(test['attributes'], [[0, 0, 0, 0, 1, 1]])
  np.testing.assert_allclose(test['keypoints'][0], p[8], atol=1e-5)


def test_wflw_bad_lines_are_skipped_and_reported(wflw):
  _, _, warnings = wflw
  log = '\n'.join(warnings)
  for where, reason in [('line 4', 'expected 207 fields'), ('line 5', 'non-numeric value'),
                        ('line 6', 'attribute flag outside {0, 1}'),
                        ('line 7 (9--Press/none.jpg)', 'missing image'),
                        ('line 8 (1--Handshaking/b.jpg)', 'zero-area box'),
                        ('line 9 (1--Handshaking/b.jpg)', 'keypoint far outside the image')]:
    assert (f'list_98pt_rect_attr_train.txt: skipped 1 record(s) ({reason}), '
            f'e.g. {where}.') in log, (reason, log)
  assert 'list_98pt_rect_attr_test.txt: skipped' not in log


def test_wflw_missing_and_partial_manual_dir(tmp_path):
  with pytest.raises(FileNotFoundError, match='(?s)manual_dir.*wywu.github.io'):
    data.get_builder(_config('wflw', str(tmp_path), str(tmp_path / 'nowhere'), 'wflw'))
  (tmp_path / 'wflw' / 'WFLW_images').mkdir(parents=True)
  with pytest.raises(FileNotFoundError, match='list_98pt_rect_attr_train.txt'):
    data.get_builder(_config('wflw', str(tmp_path / 'tfds'), str(tmp_path / 'wflw'), 'wflw'))


# ------------------------------------------------------------------- 300W

@pytest.fixture(scope='module')
def ibug(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('300w'))
  faces = {  # relative image path -> 1-based points as written in the .pts
      'afw/134212_1.jpg': _points(68, 0) + 1,
      'helen/trainset/100032540_1.jpg': _points(68, 1) + 1,
      'lfpw/trainset/image_0001.png': _points(68, 2) + 1,
      'helen/testset/296814969_3.jpg': _points(68, 3) + 1,
      'lfpw/testset/image_0003.png': _points(68, 4) + 1,
      'ibug/image_003_1.jpg': _points(68, 5) + 1,
  }
  for image, points in faces.items():
    _image(os.path.join(root, image))
    with open(os.path.join(root, os.path.splitext(image)[0] + '.pts'), 'w') as f:
      f.write(_pts_text(points))
  bad = {
      'afw/bad_count.pts': _pts_text(_points(67, 6)),
      'afw/no_image.pts': _pts_text(_points(68, 7)),
      'helen/trainset/garbled.pts': _pts_text(_points(68, 8)).replace('{\n', '{\nx', 1),
      'ibug/malformed.pts': _pts_text(_points(68, 9)).replace('{', ''),
  }
  for pts, text in bad.items():
    with open(os.path.join(root, pts), 'w') as f:
      f.write(text)
  for pts in ('afw/bad_count.pts', 'helen/trainset/garbled.pts', 'ibug/malformed.pts'):
    _image(os.path.join(root, pts[:-4] + '.jpg'))
  _image(os.path.join(root, 'afw', 'unannotated.jpg'))  # no .pts: not a face
  with _captured_warnings() as warnings:
    builder = data.get_builder(
        _config('ibug_300w', str(tmp_path_factory.mktemp('tfds')), root, 'ibug_300w'))
  splits = _read(builder, ('train', 'test_common', 'test_challenge', 'test_full'))
  return faces, splits, warnings


def test_300w_points_become_0_based_with_a_tight_box(ibug):
  faces, splits, _ = ibug
  record = splits['train']['afw/134212_1.jpg']
  objs = record['objects']
  expected = faces['afw/134212_1.jpg'] - 1.0
  np.testing.assert_allclose(objs['keypoints'][0], expected, atol=1e-4)
  np.testing.assert_array_equal(objs['visibility'], 2)
  low, high = expected.min(0), expected.max(0)
  np.testing.assert_allclose(objs['bbox'][0], [*low, *(high - low)], atol=1e-4)
  np.testing.assert_allclose(objs['area'][0], np.prod(high - low), rtol=1e-5)
  # A PNG image (LFPW) decodes through the same feature.
  assert splits['train']['lfpw/trainset/image_0001.png']['image'].shape == (H, W, 3)


def test_300w_splits_follow_the_common_protocol(ibug):
  _, splits, _ = ibug
  assert sorted(splits['train']) == [
      'afw/134212_1.jpg', 'helen/trainset/100032540_1.jpg', 'lfpw/trainset/image_0001.png']
  assert sorted(splits['test_common']) == [
      'helen/testset/296814969_3.jpg', 'lfpw/testset/image_0003.png']
  assert sorted(splits['test_challenge']) == ['ibug/image_003_1.jpg']
  full = {name: int(r['image/id']) for name, r in splits['test_full'].items()}
  assert full == {'helen/testset/296814969_3.jpg': 1, 'lfpw/testset/image_0003.png': 2,
                  'ibug/image_003_1.jpg': 3}
  assert int(splits['test_challenge']['ibug/image_003_1.jpg']['image/id']) == 1


def test_300w_bad_files_are_skipped_and_reported(ibug):
  _, _, warnings = ibug
  log = '\n'.join(warnings)
  for split, pts, reason in [('train', 'afw/bad_count.pts', 'expected 68 points'),
                             ('train', 'afw/no_image.pts', 'missing image'),
                             ('train', 'helen/trainset/garbled.pts', 'non-numeric value'),
                             ('test_challenge', 'ibug/malformed.pts', 'malformed .pts file'),
                             ('test_full', 'ibug/malformed.pts', 'malformed .pts file')]:
    assert f'300W {split}: skipped 1 record(s) ({reason}), e.g. {pts}.' in log, (reason, log)
  assert '300W test_common: skipped' not in log


def test_300w_missing_and_partial_manual_dir(tmp_path):
  with pytest.raises(FileNotFoundError, match='(?s)manual_dir.*ibug.doc.ic.ac.uk'):
    data.get_builder(_config('ibug_300w', str(tmp_path), str(tmp_path / 'nowhere'),
                             'ibug_300w'))
  for folder in ('afw', 'helen/trainset', 'lfpw/trainset'):
    (tmp_path / '300w' / folder).mkdir(parents=True)
  with pytest.raises(FileNotFoundError,
                     match=r"missing: \['helen/testset', 'ibug', 'lfpw/testset'\]"):
    data.get_builder(_config('ibug_300w', str(tmp_path / 'tfds'), str(tmp_path / '300w'),
                             'ibug_300w'))
