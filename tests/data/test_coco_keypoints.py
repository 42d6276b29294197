"""The COCO-format builder on files written in the exact COCO 2017 layout."""

import os

import cv2
import numpy as np
import pytest

from posejax import data
import dataset_fixtures
import ml_collections

_write_coco = dataset_fixtures.write_coco_split
_person = dataset_fixtures.coco_person


@pytest.fixture(scope='module')
def coco_dir(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('coco'))
  rng = np.random.default_rng(0)
  for split in ('train', 'val'):
    images, anns = [], []
    for i in range(1, 4):
      name = f'{i:012d}.jpg'
      images.append({'id': i, 'file_name': name, 'width': 64, 'height': 48})
    kps = np.zeros((17, 3))
    kps[0] = [10.0, 12.0, 2]
    kps[5] = [20.5, 30.25, 1]
    anns.append(_person(11, 1, kps, [5, 6, 30, 35]))
    anns.append(_person(12, 1, np.zeros(51), [0, 0, 64, 48], iscrowd=1))
    bad = kps.copy()
    bad[3] = [np.nan, 1, 2]
    anns.append(_person(13, 2, bad, [1, 1, 10, 10]))          # non-finite
    anns.append(_person(14, 2, kps, [1, 1, 0, 10]))           # zero-area box
    anns.append({**_person(15, 2, kps, [1, 1, 9, 9]), 'keypoints': [1, 2, 2]})  # wrong K
    anns.append(_person(16, 3, kps, [2, 2, 20, 20]))          # image 3 is corrupt
    images.append({'id': 4, 'file_name': 'missing.jpg', 'width': 10, 'height': 10})
    _write_coco(root, split, images, anns)
    for i in range(1, 4):
      cv2.imwrite(os.path.join(root, f'{split}2017', f'{i:012d}.jpg'),
                  rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    with open(os.path.join(root, f'{split}2017', f'{3:012d}.jpg'), 'wb') as f:
      f.write(b'not a jpeg')
  return root


def _dataset_config(data_dir, manual_dir):
  return ml_collections.ConfigDict(dict(
      name='coco_keypoints', config='2017', data_dir=data_dir,
      manual_dir=manual_dir, synthetic={}))


def test_builds_coco2017_layout_and_rejects_bad_records(coco_dir, tmp_path, caplog):
  builder = data.get_builder(_dataset_config(str(tmp_path), coco_dir))
  records = list(builder.as_dataset(split='validation', shuffle_files=False).as_numpy_iterator())
  by_id = {int(r['image/id']): r for r in records}
  # The corrupt image (3) and the missing one (4) are skipped.
  assert sorted(by_id) == [1, 2]
  one = by_id[1]
  assert one['image'].shape == (48, 64, 3)
  assert one['image/filename'] == b'000000000001.jpg'
  objs = one['objects']
  np.testing.assert_array_equal(objs['id'], [11, 12])
  np.testing.assert_allclose(objs['keypoints'][0, 0], [10.0, 12.0])
  np.testing.assert_allclose(objs['keypoints'][0, 5], [20.5, 30.25])
  assert objs['visibility'][0, 0] == 2 and objs['visibility'][0, 5] == 1
  assert objs['visibility'][0, 1] == 0
  np.testing.assert_allclose(objs['bbox'][0], [5, 6, 30, 35])
  np.testing.assert_array_equal(objs['iscrowd'], [0, 1])
  np.testing.assert_array_equal(objs['num_keypoints'], [2, 0])
  # Image 2's three annotations are all malformed and dropped.
  assert len(by_id[2]['objects']['id']) == 0
  log = caplog.text
  assert 'missing or undecodable image' in log and 'e.g. id 3' in log
  assert 'non-finite value' in log and 'e.g. id 13' in log
  assert 'zero-area box' in log and 'expected 17 keypoints' in log


def test_missing_manual_dir_is_one_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match='(?s)manual_dir.*cocodataset.org'):
    data.get_builder(_dataset_config(str(tmp_path), str(tmp_path / 'nowhere')))


def test_partial_manual_dir_names_the_missing_files(tmp_path):
  manual = tmp_path / 'coco'
  (manual / 'annotations').mkdir(parents=True)
  (manual / 'annotations' / 'person_keypoints_val2017.json').write_text('{}')
  with pytest.raises(FileNotFoundError, match='train2017'):
    data.get_builder(_dataset_config(str(tmp_path / 'tfds'), str(manual)))


def test_unknown_dataset_names_are_rejected(tmp_path):
  cfg = _dataset_config(str(tmp_path), '')
  cfg.name = 'coco_keypointz'
  with pytest.raises(ValueError, match="coco_keypointz.*coco_keypoints"):
    data.get_builder(cfg)
  cfg = _dataset_config(str(tmp_path), '')
  cfg.config = '2016'
  with pytest.raises(ValueError, match="'2016'"):
    data.get_builder(cfg)


def test_ignore_mask_covers_crowds_and_people_without_keypoints(tmp_path):
  """Crowd RLE and a keypoint-less person's polygon become the ignore mask,
  as the official HigherHRNet loader masks them; labelled people do not."""
  from pycocotools import mask as mask_utils
  root = str(tmp_path / 'coco')
  h, w = 40, 60
  crowd = np.zeros((h, w), np.uint8, order='F')
  crowd[5:15, 40:55] = 1
  rle = mask_utils.encode(np.asfortranarray(crowd))
  # Uncompressed counts, as COCO's json stores crowd regions.
  counts, run, value = [], 0, 0
  for v in crowd.flatten(order='F'):
    if v != value:
      counts.append(run)
      run, value = 0, v
    run += 1
  counts.append(run)
  assert mask_utils.decode(mask_utils.frPyObjects(
      {'counts': counts, 'size': [h, w]}, h, w)).sum() == crowd.sum() == mask_utils.area(rle)
  kps = np.zeros((17, 3))
  kps[0] = [10, 10, 2]
  anns = [
      _person(1, 1, kps, [5, 5, 10, 10]),
      {**_person(2, 1, np.zeros(51), [40, 5, 15, 10], iscrowd=1),
       'segmentation': {'counts': counts, 'size': [h, w]}},
      {**_person(3, 1, np.zeros(51), [2, 25, 10, 10]),
       'segmentation': [[2, 25, 12, 25, 12, 35, 2, 35]]},
      _person(4, 1, np.zeros(51), [30, 30, 5, 5]),  # no segmentation: its box
  ]
  for split in ('train', 'val'):
    _write_coco(root, split, [{'id': 1, 'file_name': 'a.jpg', 'width': w,
                               'height': h}], anns)
    cv2.imwrite(os.path.join(root, f'{split}2017', 'a.jpg'),
                np.full((h, w, 3), 128, np.uint8))
  builder = data.get_builder(_dataset_config(str(tmp_path / 'records'), root))
  record = next(builder.as_dataset(split='validation').as_numpy_iterator())
  mask = record['ignore_mask'][..., 0]
  assert mask.shape == (h, w) and set(np.unique(mask)) == {0, 1}
  np.testing.assert_array_equal(mask[5:15, 40:55], 1)   # the crowd
  assert mask[26:34, 3:11].all()                          # the polygon
  np.testing.assert_array_equal(mask[30:35, 30:35], 1)   # the box
  assert not mask[5:15, 5:15].any()                       # the labelled person
  assert mask.sum() < crowd.sum() + 12 * 12 + 25 + 5
