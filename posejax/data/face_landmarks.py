"""TFDS builders for face landmark benchmarks: WFLW (98 points) and 300W (68).

Both hold one object per annotated face, every landmark labelled and visible
(visibility 2: neither format flags occluded points per landmark). NME is
normalised by the outer eye corners (keypoints.WFLW_OUTER_EYE_CORNERS,
keypoints.IBUG_300W_OUTER_EYE_CORNERS).

WFLW (Wu et al., CVPR 2018), `wflw`
-----------------------------------
Published at https://wywu.github.io/projects/LAB/WFLW.html
(WFLW_images.tar.gz, WFLW_annotations.tar.gz). Expected layout, both archives
extracted into manual_dir:

    <manual_dir>/WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_train.txt
    <manual_dir>/WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_test.txt
    <manual_dir>/WFLW_images/<event folder>/<image>.jpg

Each line of a list file describes one face with 207 space-separated fields:
196 floats (x0 y0 ... x97 y97), the face rectangle x_min y_min x_max y_max,
six 0/1 attribute flags (pose, expression, illumination, make-up, occlusion,
blur) and the image path relative to WFLW_images/. The landmark coordinates
are sub-pixel floats in the image frame and are used as given (they are not
1-based). `bbox` is the rectangle as (x_min, y_min, x_max - x_min,
y_max - y_min). The flags are stored as `attributes` (6,) int32, in
WFLW_ATTRIBUTES order, so that NME can be reported per WFLW test subset.
Splits `train` (7500 faces) and `test` (2500). Faces of the same image share
one record; `image/id` is the image's order of first appearance in the list
file, `objects/id` the face's line number.

300W (Sagonas et al., 2013), `ibug_300w`
----------------------------------------
Published by iBUG at https://ibug.doc.ic.ac.uk/resources/facial-point-annotations/
(the 300-W re-annotations of AFW, HELEN, LFPW and IBUG; one zip each). Expected
layout, each image beside its .pts file, as the zips extract:

    <manual_dir>/afw/*.jpg, *.pts
    <manual_dir>/helen/trainset/*.jpg, *.pts
    <manual_dir>/helen/testset/*.jpg, *.pts
    <manual_dir>/lfpw/trainset/*.png, *.pts
    <manual_dir>/lfpw/testset/*.png, *.pts
    <manual_dir>/ibug/*.jpg, *.pts

A .pts file reads `version: 1`, `n_points: 68`, `{`, 68 lines `x y`, `}`,
in 1-based pixel coordinates: 1 is subtracted (0-based, docs/conventions.md). `bbox` is
the tight box of the 68 points. Splits follow the common 300W protocol (as in
the HRNet facial landmark work): `train` = afw + helen/trainset +
lfpw/trainset (3148 faces); `test_common` = helen/testset + lfpw/testset
(554); `test_challenge` = ibug (135); `test_full` = common + challenge (689).
Within a split the .pts files are taken subset by subset in that order, sorted
by name; `image/id` and `objects/id` are the 1-based position in that list
(a common face has the same id in `test_common` and `test_full`; in
`test_full` the challenge faces are numbered after the common ones).
"""

from __future__ import annotations

import collections
import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds

from posejax import keypoints as keypoints_lib
from posejax.data import records

WFLW_ATTRIBUTES = keypoints_lib.WFLW_ATTRIBUTES
_IMAGE_EXTENSIONS = ('.jpg', '.png', '.jpeg', '.JPG', '.PNG', '.JPEG')


def _face(object_id: int, keypoints: np.ndarray, bbox, image: records.ImageFile,
          **extras) -> dict:
  """A face with every landmark labelled (visibility 2)."""
  return records.make_object(
      object_id=object_id, keypoints=keypoints,
      visibility=np.full((keypoints.shape[0],), 2, np.int32), bbox=bbox,
      image_size=(image.height, image.width), **extras)


# ------------------------------------------------------------------- WFLW

@dataclasses.dataclass
class WflwConfig(tfds.core.BuilderConfig):
  """Which list file makes each split."""

  split_files: dict[str, str] = dataclasses.field(default_factory=dict)
  image_dir: str = 'WFLW_images'
  keypoints: str = 'wflw'


_WFLW_LISTS = 'WFLW_annotations/list_98pt_rect_attr_train_test'
WFLW_DEFAULT = WflwConfig(
    name='default',
    description='WFLW train (7500 faces) and test (2500 faces).',
    split_files={
        'train': f'{_WFLW_LISTS}/list_98pt_rect_attr_train.txt',
        'test': f'{_WFLW_LISTS}/list_98pt_rect_attr_test.txt',
    })


class Wflw(tfds.core.GeneratorBasedBuilder):
  """WFLW: 98 face landmarks, face rectangles and six attribute flags."""

  # Dataset facts the rest of posejax reads (posejax/data/__init__.py).
  METRIC = 'nme'
  EVAL_EXTRAS = ('attributes',)
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [WFLW_DEFAULT]
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Download WFLW_images.tar.gz and WFLW_annotations.tar.gz from
  https://wywu.github.io/projects/LAB/WFLW.html and extract both into one
  folder, so that it holds WFLW_images/<event>/*.jpg and
  WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_{train,test}.txt.
  Pass the folder with --config.dataset.manual_dir.
  """

  def _info(self) -> tfds.core.DatasetInfo:
    k = keypoints_lib.get_spec(self.builder_config.keypoints).num_keypoints
    return self.dataset_info_from_configs(
        features=records.record_features(records.object_features(
            k, attributes=tfds.features.Tensor(
                shape=(len(WFLW_ATTRIBUTES),), dtype=np.int32))),
        supervised_keys=None,
        homepage='https://wywu.github.io/projects/LAB/WFLW.html',
    )

  def _split_generators(self, dl_manager):
    root = os.fspath(dl_manager.manual_dir)
    cfg = self.builder_config
    records.check_manual_files(root, [*cfg.split_files.values(), cfg.image_dir],
                               'WFLW', self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    return {
        split: self._generate_examples(root, list_file)
        for split, list_file in cfg.split_files.items()
    }

  def _generate_examples(self, root: str, list_file: str):
    k = keypoints_lib.get_spec(self.builder_config.keypoints).num_keypoints
    rejected = records.Rejections(os.path.basename(list_file))
    by_image = collections.defaultdict(list)  # image -> [(line, parsed face)]
    with open(os.path.join(root, list_file)) as f:
      for line, text in enumerate(f, start=1):
        if not text.strip():
          continue
        try:
          face = parse_wflw_line(text, k)
        except records.Rejected as e:
          rejected.add(str(e), f'line {line}')
          continue
        by_image[face[0]].append((line, face))
    image_dir = os.path.join(root, self.builder_config.image_dir)
    for image_id, (name, faces) in enumerate(by_image.items(), start=1):
      try:
        image = records.read_image(os.path.join(image_dir, name))
      except records.Rejected as e:
        for line, _ in faces:
          rejected.add(str(e), f'line {line} ({name})')
        continue
      objects = []
      for line, (_, keypoints, rect, attributes) in faces:
        try:
          objects.append(_face(
              line, keypoints, [rect[0], rect[1], rect[2] - rect[0], rect[3] - rect[1]],
              image, attributes=attributes))
        except records.Rejected as e:
          rejected.add(str(e), f'line {line} ({name})')
      if objects:
        yield name, {
            'image': image.data,
            'image/id': image_id,
            'image/filename': name,
            'objects': records.stack_objects(objects, k),
        }
    rejected.log_summary()


def parse_wflw_line(text: str, num_points: int = 98):
  """One list-file line -> (image name, (K, 2) points, rect (4,), flags (6,)).

  Raises:
    records.Rejected: wrong field count, non-numeric values, flags not 0/1.
  """
  fields = text.split()
  expected = 2 * num_points + 4 + len(WFLW_ATTRIBUTES) + 1
  if len(fields) != expected:
    raise records.Rejected(f'expected {expected} fields')
  numbers = records.parse_floats(fields[:-1])
  keypoints = numbers[:2 * num_points].reshape(num_points, 2)
  rect = numbers[2 * num_points:2 * num_points + 4]
  flags = numbers[2 * num_points + 4:]
  if not np.all((flags == 0) | (flags == 1)):
    raise records.Rejected('attribute flag outside {0, 1}')
  return fields[-1], keypoints, rect, flags.astype(np.int32)


# ------------------------------------------------------------------- 300W

@dataclasses.dataclass
class Ibug300wConfig(tfds.core.BuilderConfig):
  """Which published subsets (folders) make each split, in order."""

  split_subsets: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
  keypoints: str = 'ibug_300w'


_COMMON = ('helen/testset', 'lfpw/testset')
_CHALLENGE = ('ibug',)
IBUG_300W_DEFAULT = Ibug300wConfig(
    name='default',
    description='300W: train 3148, test common 554 / challenge 135 / full 689.',
    split_subsets={
        'train': ('afw', 'helen/trainset', 'lfpw/trainset'),
        'test_common': _COMMON,
        'test_challenge': _CHALLENGE,
        'test_full': _COMMON + _CHALLENGE,
    })


class Ibug300w(tfds.core.GeneratorBasedBuilder):
  """300W: 68 face landmarks on AFW, HELEN, LFPW and IBUG images."""

  name = 'ibug_300w'
  # Dataset facts the rest of posejax reads (posejax/data/__init__.py).
  METRIC = 'nme'
  EVAL_EXTRAS = ()
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [IBUG_300W_DEFAULT]
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Download the 300-W annotated images (afw.zip, helen.zip, lfpw.zip,
  ibug.zip) from https://ibug.doc.ic.ac.uk/resources/facial-point-annotations/
  and extract them into one folder, so that it holds afw/, helen/trainset/,
  helen/testset/, lfpw/trainset/, lfpw/testset/ and ibug/, each image beside
  its .pts file. Pass the folder with --config.dataset.manual_dir.
  """

  def _info(self) -> tfds.core.DatasetInfo:
    k = keypoints_lib.get_spec(self.builder_config.keypoints).num_keypoints
    return self.dataset_info_from_configs(
        features=records.record_features(records.object_features(k)),
        supervised_keys=None,
        homepage='https://ibug.doc.ic.ac.uk/resources/300-W/',
    )

  def _split_generators(self, dl_manager):
    root = os.fspath(dl_manager.manual_dir)
    subsets = self.builder_config.split_subsets
    records.check_manual_files(
        root, sorted({s for names in subsets.values() for s in names}), '300W',
        self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    return {
        split: self._generate_examples(root, split, folders)
        for split, folders in subsets.items()
    }

  def _generate_examples(self, root: str, split: str, folders: tuple[str, ...]):
    k = keypoints_lib.get_spec(self.builder_config.keypoints).num_keypoints
    rejected = records.Rejections(f'300W {split}')
    pts_files = [os.path.join(folder, name) for folder in folders
                 for name in sorted(os.listdir(os.path.join(root, folder)))
                 if name.endswith('.pts')]
    for image_id, pts_file in enumerate(pts_files, start=1):
      try:
        with open(os.path.join(root, pts_file)) as f:
          keypoints = parse_pts(f.read(), k) - 1.0  # 1-based -> 0-based
        image_file = _image_beside(root, pts_file)
        image = records.read_image(os.path.join(root, image_file))
        low, high = keypoints.min(axis=0), keypoints.max(axis=0)
        obj = _face(image_id, keypoints, [*low, *(high - low)], image)
      except records.Rejected as e:
        rejected.add(str(e), pts_file)
        continue
      yield pts_file, {
          'image': image.data,
          'image/id': image_id,
          'image/filename': image_file,
          'objects': records.stack_objects([obj], k),
      }
    rejected.log_summary()


def _image_beside(root: str, pts_file: str) -> str:
  """The image with the .pts file's name; Rejected('missing image') if none."""
  stem = pts_file[:-len('.pts')]
  for extension in _IMAGE_EXTENSIONS:
    if os.path.exists(os.path.join(root, stem + extension)):
      return stem + extension
  raise records.Rejected('missing image')


def parse_pts(text: str, num_points: int = 68) -> np.ndarray:
  """An iBUG .pts file -> (K, 2) points as written (1-based).

  Raises:
    records.Rejected: not the `version / n_points / { ... }` layout, another
      number of points, or non-numeric coordinates.
  """
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  header = {}
  while lines and ':' in lines[0]:
    key, value = lines.pop(0).split(':', 1)
    header[key.strip()] = value.strip()
  if 'n_points' not in header or not lines or lines[0] != '{' or lines[-1] != '}':
    raise records.Rejected('malformed .pts file')
  body = lines[1:-1]
  if header['n_points'] != str(num_points) or len(body) != num_points:
    raise records.Rejected(f'expected {num_points} points')
  rows = [line.split() for line in body]
  if any(len(r) != 2 for r in rows):
    raise records.Rejected('malformed .pts file')
  return records.parse_floats([v for r in rows for v in r]).reshape(num_points, 2)
