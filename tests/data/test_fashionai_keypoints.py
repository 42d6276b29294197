"""The FashionAI builder on files written in the Tianchi train.csv layout."""

import logging
import os

import ml_collections
import numpy as np
import pytest

from posejax import data
from posejax import keypoints as keypoints_lib
import dataset_fixtures
from dataset_fixtures import captured_warnings as _captured_warnings
from dataset_fixtures import fashionai_image_id as _image_id

NAMES = keypoints_lib.FASHIONAI.keypoint_names
H, W = 40, 32


def _cells(category, labels):
  """24 x_y_v cells of a `category` row: only `labels` given."""
  del category  # the csv cells do not depend on it
  return dataset_fixtures.fashionai_cells(labels)


@pytest.fixture(scope='module')
def manual_dir(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('fashionai'))
  rows = {}  # name -> (line, image_id, category, cells)
  def add(name, image_id, category, cells, image=True):
    rows[name] = (len(rows) + 2, image_id, category, cells)
    if image:
      dataset_fixtures.write_image(os.path.join(root, image_id), H, W, value=20 * len(rows))

  blouse = {'neckline_left': (3, 4, 1), 'neckline_right': (20, 5, 0),
            'armpit_left': (5, 20, 1), 'cuff_left_in': (-1, -1, -1),
            'waistband_left': (9, 9, 1)}  # not a blouse point: ignored
  add('blouse', _image_id('blouse', False), 'blouse', _cells('blouse', blouse))
  add('blouse_val', _image_id('blouse', True), 'blouse',
      _cells('blouse', {'center_front': (16, 10, 1)}))
  add('trousers', _image_id('trousers', False), 'trousers',
      _cells('trousers', {'crotch': (15, 30, 1), 'waistband_right': (28, 2, 0)}))
  bad = lambda c: _image_id(c, False, start=100 + 10 * len(rows))
  add('columns', bad('skirt'), 'skirt', _cells('skirt', {})[:-1])
  add('cell', bad('dress'), 'dress', ['12_x_1'] + _cells('dress', {})[1:])
  add('flag', bad('outwear'), 'outwear', _cells('outwear', {'armpit_left': (3, 3, 3)}))
  add('no_image', bad('blouse'), 'blouse', _cells('blouse', {}), image=False)
  add('category', bad('hat'), 'hat', _cells('hat', {}))
  add('far', bad('skirt'), 'skirt', _cells('skirt', {'hemline_left': (5000, 3, 1)}))
  add('corrupt', bad('dress'), 'dress', _cells('dress', {}))
  with open(os.path.join(root, rows['corrupt'][1]), 'wb') as f:
    f.write(b'not a jpeg')

  dataset_fixtures.write_fashionai_csv(
      root, [(image_id, category, cells) for _, image_id, category, cells in rows.values()])
  return root, rows


def _config(data_dir, manual_dir, config='all'):
  return ml_collections.ConfigDict(dict(
      name='fashionai_keypoints', config=config, data_dir=data_dir,
      manual_dir=manual_dir, keypoints='fashionai'))


def _read(builder):
  return {split: {int(r['image/id']): r for r in builder.as_dataset(
              split=split, shuffle_files=False).as_numpy_iterator()}
          for split in ('train', 'validation')}


@pytest.fixture(scope='module')
def built(manual_dir, tmp_path_factory):
  root, rows = manual_dir
  with _captured_warnings() as warnings:
    builder = data.get_builder(_config(str(tmp_path_factory.mktemp('tfds')), root))
  return rows, _read(builder), warnings


def test_visibility_flags_map_to_coco_and_other_categories_stay_unlabelled(built):
  rows, splits, _ = built
  line, image_id, _, _ = rows['blouse']
  record = splits['train'][line]
  assert record['image/filename'].decode() == image_id
  objs = record['objects']
  assert objs['id'].tolist() == [line]
  vis = dict(zip(NAMES, objs['visibility'][0]))
  xy = dict(zip(NAMES, objs['keypoints'][0].tolist()))
  assert vis['neckline_left'] == 2 and xy['neckline_left'] == [3, 4]
  assert vis['neckline_right'] == 1 and xy['neckline_right'] == [20, 5]
  assert vis['cuff_left_in'] == 0 and xy['cuff_left_in'] == [0, 0]
  assert vis['waistband_left'] == 0  # labelled in the csv, but not a blouse point
  assert objs['num_keypoints'][0] == 3
  np.testing.assert_array_equal(objs['bbox'][0], [0, 0, W, H])
  assert objs['area'][0] == W * H
  assert objs['category'][0] == keypoints_lib.FASHIONAI_CATEGORIES.index('blouse')


def test_validation_is_the_hashed_holdout(built):
  rows, splits, _ = built
  assert sorted(splits['validation']) == [rows['blouse_val'][0]]
  assert sorted(splits['train']) == [rows['blouse'][0], rows['trousers'][0]]
  trousers = splits['train'][rows['trousers'][0]]['objects']
  crotch = NAMES.index('crotch')
  assert trousers['visibility'][0, crotch] == 2
  assert trousers['category'][0] == keypoints_lib.FASHIONAI_CATEGORIES.index('trousers')


def test_bad_rows_are_skipped_and_reported_with_line_and_count(built):
  rows, _, warnings = built
  log = '\n'.join(warnings)
  for name, reason in [('columns', 'expected 26 columns'), ('cell', 'non-numeric value'),
                       ('flag', 'visibility flag outside {-1, 0, 1}'),
                       ('no_image', 'missing image'), ('category', 'unknown category'),
                       ('far', 'keypoint far outside the image'),
                       ('corrupt', 'undecodable image')]:
    line, image_id = rows[name][:2]
    assert (f'Annotations/train.csv (train rows): skipped 1 record(s) ({reason}), '
            f'e.g. line {line} ({image_id}).') in log, (reason, log)
  assert '(validation rows): skipped' not in log


def test_category_config_keeps_only_its_rows(manual_dir, tmp_path, caplog):
  root, rows = manual_dir
  caplog.set_level(logging.INFO, logger='absl')
  builder = data.get_builder(_config(str(tmp_path), root, 'blouse'))
  splits = _read(builder)
  assert sorted(splits['train']) == [rows['blouse'][0]]
  assert sorted(splits['validation']) == [rows['blouse_val'][0]]
  assert builder.info.features['objects']['keypoints'].shape == (24, 2)
  # Other categories' rows are not this config's business; bad blouse rows and
  # rows of no known category are, each logged where it is, then counted.
  line, image_id = rows['no_image'][:2]
  assert (f'Annotations/train.csv (train rows), line {line} ({image_id}): '
          'skipped (missing image).') in caplog.text
  assert 'skipped 1 record(s) (missing image)' in caplog.text
  assert 'unknown category' in caplog.text
  for name in ('columns', 'cell', 'flag', 'far', 'corrupt'):
    assert f'line {rows[name][0]} ' not in caplog.text


def test_category_keypoints_are_the_published_subsets():
  counts = {c: len(v) for c, v in keypoints_lib.FASHIONAI_CATEGORY_KEYPOINTS.items()}
  assert counts == {'blouse': 13, 'outwear': 14, 'trousers': 7, 'skirt': 4, 'dress': 15}
  names = lambda c: {NAMES[k] for k in keypoints_lib.FASHIONAI_CATEGORY_KEYPOINTS[c]}
  assert names('skirt') == {'waistband_left', 'waistband_right', 'hemline_left',
                            'hemline_right'}
  assert 'center_front' in names('blouse') and 'center_front' not in names('outwear')
  assert 'crotch' in names('trousers')


def test_missing_manual_dir_is_one_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match='(?s)manual_dir.*tianchi'):
    data.get_builder(_config(str(tmp_path), str(tmp_path / 'nowhere')))


def test_partial_manual_dir_names_the_missing_files(tmp_path):
  (tmp_path / 'fa' / 'Images').mkdir(parents=True)
  with pytest.raises(FileNotFoundError, match='Annotations/train.csv or Annotations/annotations.csv'):
    data.get_builder(_config(str(tmp_path / 'tfds'), str(tmp_path / 'fa')))


def test_a_file_that_is_not_the_challenge_csv_is_refused(tmp_path):
  (tmp_path / 'fa' / 'Images').mkdir(parents=True)
  (tmp_path / 'fa' / 'Annotations').mkdir()
  (tmp_path / 'fa' / 'Annotations' / 'annotations.csv').write_text('image_id,x\n')
  with pytest.raises(ValueError, match='annotations.csv: the header'):
    data.get_builder(_config(str(tmp_path / 'tfds'), str(tmp_path / 'fa')))
