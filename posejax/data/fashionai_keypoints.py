"""TFDS builder for the FashionAI garment keypoints (Tianchi, 2018).

The data of the "FashionAI Global Challenge - Key Points Detection of Apparel"
is published on Alibaba Cloud Tianchi (tianchi.aliyun.com, dataset
"FashionAI"; registration required). Expected layout, as the training archive
extracts:

    <manual_dir>/Annotations/train.csv      (or Annotations/annotations.csv,
                                              the name in the warm-up release)
    <manual_dir>/Images/<category>/*.jpg

The csv has a header `image_id,image_category,neckline_left,...` with the 24
keypoint columns in the order of keypoints.FASHIONAI. `image_id` is the image
path relative to manual_dir (`Images/blouse/<hash>.jpg`), `image_category` one
of blouse, outwear, trousers, skirt, dress, and each keypoint cell is `x_y_v`:
integer pixel coordinates and v = 1 visible, 0 occluded, -1 absent (then
`-1_-1_-1`).

Conversions:
  * v = 1 -> visibility 2, v = 0 -> 1, v = -1 -> 0 (stored as (0, 0)). The
    coordinates are pixel indices of the image, used as given (0-based).
  * Every record keeps all 24 keypoints so that one KeypointSpec covers the
    five categories; points outside the garment's category
    (keypoints.FASHIONAI_CATEGORY_KEYPOINTS) always have visibility 0.
  * `bbox` is the whole image. Each image shows one garment, and the
    challenge gives no box at test time (only the image and its category),
    so a box drawn around the labelled keypoints would hand the evaluation
    information a test image does not have. `area` is the image area.
  * `category` (objects/category, a ClassLabel over
    keypoints.FASHIONAI_CATEGORIES) keeps the garment category, which the
    FashionAI error needs (FASHIONAI_NORMALISER_PAIRS).

Configs: one per category (`blouse`, `outwear`, `trousers`, `skirt`, `dress`)
keeping only that category's rows, and `all`. Splits: the public release has
labels for its training set only, so `validation` is a held-out fraction of it
(`validation_fraction`, 10%): an image is held out when a hash of its
`image_id` falls below the fraction, so the split is the same on every
machine, in every config (a category's validation images are exactly the
`all` validation images of that category) and does not move when rows are
reordered. `train` is the rest. `image/id` and `objects/id` are the csv line
number (the header is line 1).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds

from posejax import keypoints as keypoints_lib
from posejax.data import records

ANNOTATION_FILES = ('Annotations/train.csv', 'Annotations/annotations.csv')
# FashionAI flag v -> COCO visibility.
_VISIBILITY = {1: 2, 0: 1, -1: 0}


@dataclasses.dataclass
class FashionaiConfig(tfds.core.BuilderConfig):
  """Which garment categories to keep and how much to hold out."""

  categories: tuple[str, ...] = keypoints_lib.FASHIONAI_CATEGORIES
  validation_fraction: float = 0.1
  keypoints: str = 'fashionai'


def _configs() -> list[FashionaiConfig]:
  configs = [FashionaiConfig(name='all', description='All five categories.')]
  for category in keypoints_lib.FASHIONAI_CATEGORIES:
    configs.append(FashionaiConfig(
        name=category, description=f'{category} images only.',
        categories=(category,)))
  return configs


class FashionaiKeypoints(tfds.core.GeneratorBasedBuilder):
  """FashionAI: 24 garment keypoints over five categories, one garment an image."""

  # Dataset facts the rest of posejax reads (posejax/data/__init__.py).
  METRIC = 'fashionai_ne'
  EVAL_EXTRAS = ('category',)
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = _configs()
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Download the FashionAI keypoint training set ("fashionAI_key_points_train")
  from Alibaba Cloud Tianchi (https://tianchi.aliyun.com, dataset "FashionAI",
  requires an account) and extract it so that manual_dir holds
  Annotations/train.csv and Images/<category>/*.jpg (the image_id column of
  the csv is the image path relative to manual_dir). Pass the folder with
  --config.dataset.manual_dir.
  """

  def _info(self) -> tfds.core.DatasetInfo:
    k = keypoints_lib.get_spec(self.builder_config.keypoints).num_keypoints
    return self.dataset_info_from_configs(
        features=records.record_features(records.object_features(
            k, category=tfds.features.ClassLabel(
                names=keypoints_lib.FASHIONAI_CATEGORIES))),
        supervised_keys=None,
        homepage='https://tianchi.aliyun.com/',
    )

  def _split_generators(self, dl_manager):
    root = os.fspath(dl_manager.manual_dir)
    found = [p for p in ANNOTATION_FILES if os.path.exists(os.path.join(root, p))]
    annotation_file = found[0] if found else ' or '.join(ANNOTATION_FILES)
    records.check_manual_files(root, [annotation_file, 'Images'], 'FashionAI',
                               self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    _check_header(os.path.join(root, annotation_file))
    return {
        split: self._generate_examples(root, annotation_file, split == 'validation')
        for split in ('train', 'validation')
    }

  def _generate_examples(self, root: str, annotation_file: str, held_out: bool):
    cfg = self.builder_config
    spec = keypoints_lib.get_spec(cfg.keypoints)
    split = 'validation' if held_out else 'train'
    rejected = records.Rejections(f'{annotation_file} ({split} rows)')
    for line, row in records.csv_rows(os.path.join(root, annotation_file)):
      if row is None:
        if not held_out:  # reported once, with the train rows
          rejected.add('unreadable csv row', f'line {line}')
        continue
      if records.in_holdout(row[0], cfg.validation_fraction) != held_out:
        continue
      if (len(row) > 1 and row[1] in keypoints_lib.FASHIONAI_CATEGORIES
          and row[1] not in cfg.categories):
        continue  # another config's garment
      try:
        category, keypoints, visibility = parse_row(row, spec)
        image = records.read_image(os.path.join(root, row[0]))
        obj = records.make_object(
            object_id=line, keypoints=keypoints, visibility=visibility,
            bbox=[0.0, 0.0, image.width, image.height],
            image_size=(image.height, image.width),
            category=keypoints_lib.FASHIONAI_CATEGORIES.index(category))
      except records.Rejected as e:
        rejected.add(str(e), f'line {line} ({row[0]})')
        continue
      yield line, {
          'image': image.data,
          'image/id': line,
          'image/filename': row[0],
          'objects': records.stack_objects([obj], spec.num_keypoints),
      }
    rejected.log_summary()


def _check_header(path: str) -> None:
  """The file must be a FashionAI keypoint csv: a whole-file error otherwise."""
  names = keypoints_lib.FASHIONAI.keypoint_names
  header = records.csv_header(path)
  if header != ['image_id', 'image_category', *names]:
    raise ValueError(
        f'{path}: the header should be image_id,image_category followed by the '
        f'{len(names)} FashionAI keypoint names in order ({",".join(names)}); '
        f'got {",".join(header)[:300]!r}.')


def parse_row(row: list[str], spec: keypoints_lib.KeypointSpec):
  """A csv row -> (category, (K, 2) keypoints, (K,) visibility).

  Raises:
    records.Rejected: wrong column count, unknown category or a malformed cell.
  """
  k = spec.num_keypoints
  if len(row) != 2 + k:
    raise records.Rejected(f'expected {2 + k} columns')
  category = row[1]
  if category not in keypoints_lib.FASHIONAI_CATEGORIES:
    raise records.Rejected('unknown category')
  keypoints = np.zeros((k, 2), np.float64)
  visibility = np.zeros((k,), np.int32)
  for i, cell in enumerate(row[2:]):
    parts = cell.strip().split('_')
    if len(parts) != 3:
      raise records.Rejected('keypoint cell is not x_y_v')
    try:
      x, y, v = float(parts[0]), float(parts[1]), int(parts[2])
    except ValueError:
      raise records.Rejected('non-numeric value') from None
    if v not in _VISIBILITY:
      raise records.Rejected('visibility flag outside {-1, 0, 1}')
    keypoints[i] = x, y
    visibility[i] = _VISIBILITY[v]
  # Points that do not belong to the category are never labelled.
  labels = np.zeros(k, bool)
  labels[list(keypoints_lib.FASHIONAI_CATEGORY_KEYPOINTS[category])] = True
  visibility[~labels] = 0
  return category, keypoints, visibility
