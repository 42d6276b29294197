"""TFDS builder for the Kaggle "Facial Keypoints Detection" competition data.

Published at https://www.kaggle.com/c/facial-keypoints-detection/data
(training.zip, test.zip; a Kaggle account and accepting the competition rules
are required). Expected layout, the two archives extracted side by side:

    <manual_dir>/training.csv
    <manual_dir>/test.csv

training.csv has a header of 30 coordinate columns, `<keypoint>_x` and
`<keypoint>_y` for the 15 keypoints of keypoints.KAGGLE_FACES, then `Image`:
96 x 96 = 9216 space-separated grey values 0-255, row by row. Most rows leave
some coordinates empty. test.csv has `ImageId,Image` and no keypoints.

Conversions:
  * The grey image is replicated to 3 channels and stored as PNG (lossless;
    the pixels are the data, there is no file to keep).
  * Coordinates are pixel positions in the 96 x 96 image, used as given.
    An empty x, y pair means "not labelled": visibility 0, stored as (0, 0).
    A labelled keypoint has visibility 2 (the data has no occlusion flag).
  * `bbox` is the whole image (0, 0, 96, 96): each image is a face crop.

Splits: `train` and `validation` divide training.csv, a row going to
validation when a hash of its pixels falls below `validation_fraction` (10%):
the same on every machine and for every row order, and duplicated images
always land on the same side. `test` is test.csv, each image with one object
whose keypoints are all unlabelled (visibility 0), for prediction. `image/id`
and `objects/id` are the csv line number for training.csv (the header is line
1) and `ImageId` for test.csv.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds

from posejax import keypoints as keypoints_lib
from posejax.data import records

IMAGE_SIZE = 96
TRAIN_FILE = 'training.csv'
TEST_FILE = 'test.csv'


@dataclasses.dataclass
class KaggleFacesConfig(tfds.core.BuilderConfig):
  """How much of training.csv to hold out for validation."""

  validation_fraction: float = 0.1
  keypoints: str = 'kaggle_faces'


DEFAULT = KaggleFacesConfig(
    name='default',
    description='training.csv split 90/10 by image hash; test.csv unlabelled.')


class KaggleFacialKeypoints(tfds.core.GeneratorBasedBuilder):
  """96x96 grey face crops with up to 15 keypoints."""

  # Dataset facts the rest of posejax reads (posejax/data/__init__.py).
  METRIC = 'rmse'
  EVAL_EXTRAS = ()
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [DEFAULT]
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Download training.zip and test.zip from
  https://www.kaggle.com/c/facial-keypoints-detection/data (sign in and
  accept the competition rules first, or use `kaggle competitions download
  -c facial-keypoints-detection`) and extract them so that manual_dir holds
  training.csv and test.csv. Pass the folder with
  --config.dataset.manual_dir.
  """

  def _info(self) -> tfds.core.DatasetInfo:
    k = keypoints_lib.get_spec(self.builder_config.keypoints).num_keypoints
    return self.dataset_info_from_configs(
        features=records.record_features(records.object_features(k),
                                         image_format='png'),
        supervised_keys=None,
        homepage='https://www.kaggle.com/c/facial-keypoints-detection',
    )

  def _split_generators(self, dl_manager):
    root = os.fspath(dl_manager.manual_dir)
    records.check_manual_files(root, [TRAIN_FILE, TEST_FILE], 'Kaggle facial keypoints',
                               self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    spec = keypoints_lib.get_spec(self.builder_config.keypoints)
    train_columns = [f'{n}_{c}' for n in spec.keypoint_names for c in 'xy'] + ['Image']
    _check_header(os.path.join(root, TRAIN_FILE), train_columns)
    _check_header(os.path.join(root, TEST_FILE), ['ImageId', 'Image'])
    train, test = os.path.join(root, TRAIN_FILE), os.path.join(root, TEST_FILE)
    return {
        'train': self._generate_examples(train, 'train'),
        'validation': self._generate_examples(train, 'validation'),
        'test': self._generate_examples(test, 'test'),
    }

  def _generate_examples(self, path: str, split: str):
    if split == 'test':
      return self._generate_unlabelled(path)
    return self._generate_labelled(path, held_out=split == 'validation')

  def _generate_labelled(self, path: str, held_out: bool):
    k = keypoints_lib.get_spec(self.builder_config.keypoints).num_keypoints
    split = 'validation' if held_out else 'train'
    rejected = records.Rejections(f'{TRAIN_FILE} ({split} rows)')
    for line, row in records.csv_rows(path):
      if row is None:
        in_split = not held_out  # unreadable: reported once, with train
      else:
        in_split = records.in_holdout(
            row[-1], self.builder_config.validation_fraction) == held_out
      if not in_split:
        continue
      try:
        if row is None:
          raise records.Rejected('unreadable csv row')
        if len(row) != 2 * k + 1:
          raise records.Rejected(f'expected {2 * k + 1} columns')
        image = parse_image(row[-1])
        keypoints, visibility = parse_coordinates(row[:-1])
        obj = _face(line, keypoints, visibility)
      except records.Rejected as e:
        rejected.add(str(e), f'line {line}')
        continue
      yield line, _record(line, f'{TRAIN_FILE}:{line}', image, obj, k)
    rejected.log_summary()

  def _generate_unlabelled(self, path: str):
    k = keypoints_lib.get_spec(self.builder_config.keypoints).num_keypoints
    rejected = records.Rejections(TEST_FILE)
    seen = set()
    for line, row in records.csv_rows(path):
      try:
        if row is None:
          raise records.Rejected('unreadable csv row')
        if len(row) != 2:
          raise records.Rejected('expected 2 columns')
        try:
          image_id = int(row[0])
        except ValueError:
          raise records.Rejected('non-numeric ImageId') from None
        if image_id in seen:
          raise records.Rejected('duplicate ImageId')
        image = parse_image(row[1])
        obj = _face(image_id, np.zeros((k, 2)), np.zeros((k,), np.int32))
      except records.Rejected as e:
        rejected.add(str(e), f'line {line}')
        continue
      seen.add(image_id)
      yield image_id, _record(image_id, f'{TEST_FILE}:{image_id}', image, obj, k)
    rejected.log_summary()


def _check_header(path: str, expected: list[str]) -> None:
  """A whole-file error, raised before any split is written."""
  header = records.csv_header(path)
  if header != expected:
    raise ValueError(
        f'{path}: unexpected header {",".join(header)[:300]!r}; the Kaggle '
        f'facial keypoints file has {",".join(expected)}.')


def parse_image(cell: str) -> np.ndarray:
  """The `Image` cell -> (96, 96, 3) uint8, grey replicated to 3 channels."""
  values = cell.split()
  if len(values) != IMAGE_SIZE * IMAGE_SIZE:
    raise records.Rejected(f'image is not {IMAGE_SIZE}x{IMAGE_SIZE} pixels')
  try:
    pixels = np.asarray([int(v) for v in values], np.int64)
  except ValueError:
    raise records.Rejected('pixel values are not integers') from None
  if pixels.min() < 0 or pixels.max() > 255:
    raise records.Rejected('pixel values outside [0, 255]')
  grey = pixels.astype(np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE, 1)
  return np.repeat(grey, 3, axis=2)


def parse_coordinates(cells: list[str]) -> tuple[np.ndarray, np.ndarray]:
  """30 coordinate cells -> (15, 2) keypoints, (15,) visibility (0 or 2)."""
  pairs = [(cells[i].strip(), cells[i + 1].strip()) for i in range(0, len(cells), 2)]
  keypoints = np.zeros((len(pairs), 2), np.float64)
  visibility = np.zeros((len(pairs),), np.int32)
  for k, (x, y) in enumerate(pairs):
    if not x and not y:
      continue
    if not x or not y:
      raise records.Rejected('coordinate without its pair')
    keypoints[k] = records.parse_floats((x, y))
    visibility[k] = 2
  return keypoints, visibility


def _face(object_id: int, keypoints, visibility) -> dict:
  return records.make_object(
      object_id=object_id, keypoints=keypoints, visibility=visibility,
      bbox=[0.0, 0.0, IMAGE_SIZE, IMAGE_SIZE],
      image_size=(IMAGE_SIZE, IMAGE_SIZE))


def _record(image_id: int, filename: str, image: np.ndarray, obj: dict, k: int) -> dict:
  return {
      'image': image,
      'image/id': image_id,
      'image/filename': filename,
      'objects': records.stack_objects([obj], k),
  }
