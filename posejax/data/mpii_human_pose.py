"""TFDS builder for MPII Human Pose, from the json conversion of its annotations.

MPII Human Pose (Andriluka et al., CVPR 2014) is published at
http://human-pose.mpi-inf.mpg.de/ ("Images" tarball, about 12 GB). Its
MATLAB annotations are read here in the json conversion used by the official
HRNet and SimpleBaselines code (the `annot` folder linked from
github.com/leoxiaobin/deep-high-resolution-net.pytorch, "Data preparation"),
which also defines the usual train / validation split. Expected layout:

    <manual_dir>/annot/mpii_train.json
    <manual_dir>/annot/mpii_valid.json
    <manual_dir>/annot/gt_valid.mat      (optional: head boxes for PCKh)
    <manual_dir>/images/*.jpg

Each json file is a list with one entry per person:
`{"image": "015601864.jpg", "joints": [[x, y] * 16], "joints_vis": [0|1 * 16],
"center": [x, y], "scale": s}`, joints in the MPII order (keypoints.MPII) and
`scale` the person height / 200 px.

Conversions:
  * Joint and centre coordinates are 1-based MATLAB pixels; 1 is subtracted
    so that they follow the 0-based convention of docs/conventions.md.
  * `joints_vis` 1 -> visibility 2, 0 -> 0 (stored as (0, 0)): the json keeps
    no occluded flag, so every labelled joint counts as visible.
  * `bbox` is the square of side `scale * 200` centred on the 0-based
    `center`: the region the official code's affine crop covers before its
    own enlargement. The loader of the official code also moves the centre
    15 * scale px down and multiplies the scale by 1.25; neither is applied
    here (the pipeline's `input.padding` enlarges the box), but the raw
    `center` (0-based) and `scale` are stored per person for code that wants
    to reproduce that crop exactly. `area` is the box area.
  * `head_box` (x1, y1, x2, y2), 0-based, is what PCKh normalises by. The json
    files have no head boxes; for the validation split they are read from
    `annot/gt_valid.mat` (the official HRNet evaluation file: `headboxes_src`
    2 x 2 x N indexed [corner, (x, y), person], 1-based; `pos_gt_src`
    16 x 2 x N and `jnt_missing` 16 x N), whose N entries follow the json
    entries in order. That order is checked against the joints. Where no head
    box is known (the train split, a missing .mat, an entry that does not
    match) `head_box` is NaN, and PCKh cannot be computed for that person.

Images with several people become one record with several objects; people
appear in json order. `image/id` is the 1-based order of first appearance of
the image in the split's json file, `objects/id` the 1-based position of the
person's entry in it. Skipped people are logged as `<image> (entry i)`, i the
0-based position in the json list (and column in gt_valid.mat).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from typing import Any

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from posejax import keypoints as keypoints_lib
from posejax.data import records

# The official crop is `scale * PIXEL_STD` pixels on a side.
PIXEL_STD = 200.0
# A json joint and the .mat joint of the same entry must agree this closely
# (pixels) for the .mat head box to be attributed to the entry.
_HEAD_BOX_MATCH_TOLERANCE = 1.0


@dataclasses.dataclass
class MpiiConfig(tfds.core.BuilderConfig):
  """Which files make each split."""

  # split name -> (json annotations, .mat with head boxes or None).
  split_files: dict[str, tuple[str, str | None]] = dataclasses.field(
      default_factory=dict)
  image_dir: str = 'images'
  keypoints: str = 'mpii'


DEFAULT = MpiiConfig(
    name='default',
    description='MPII Human Pose, HRNet json annotations, train / valid split.',
    split_files={
        # The official release has head boxes for the validation people only.
        'train': ('annot/mpii_train.json', None),
        'validation': ('annot/mpii_valid.json', 'annot/gt_valid.mat'),
    })


class MpiiHumanPose(tfds.core.GeneratorBasedBuilder):
  """MPII Human Pose: single-image multi-person 2D poses, 16 joints."""

  # Dataset facts the rest of posejax reads (posejax/data/__init__.py).
  METRIC = 'pckh'
  EVAL_EXTRAS = ('head_box',)
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [DEFAULT]
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Download the MPII Human Pose images from http://human-pose.mpi-inf.mpg.de/
  (mpii_human_pose_v1.tar.gz) and extract them into <manual_dir>/images/.
  Download the json annotations (mpii_train.json, mpii_valid.json) and
  gt_valid.mat used by the official HRNet code (see "Data preparation" in
  github.com/leoxiaobin/deep-high-resolution-net.pytorch) into
  <manual_dir>/annot/. gt_valid.mat holds the head boxes PCKh needs; without
  it the validation records carry NaN head boxes. Pass the folder with
  --config.dataset.manual_dir.
  """

  def _info(self) -> tfds.core.DatasetInfo:
    k = keypoints_lib.get_spec(self.builder_config.keypoints).num_keypoints
    return self.dataset_info_from_configs(
        features=records.record_features(records.object_features(
            k,
            center=tfds.features.Tensor(shape=(2,), dtype=np.float32),
            scale=np.float32,
            head_box=tfds.features.Tensor(shape=(4,), dtype=np.float32))),
        supervised_keys=None,
        homepage='http://human-pose.mpi-inf.mpg.de/',
    )

  def _split_generators(self, dl_manager):
    root = os.fspath(dl_manager.manual_dir)
    cfg = self.builder_config
    records.check_manual_files(
        root, [ann for ann, _ in cfg.split_files.values()] + [cfg.image_dir],
        'MPII', self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    splits = {}
    for split, (ann, mat) in cfg.split_files.items():
      # Whole-file problems surface here, before any split is written.
      entries = _load_entries(os.path.join(root, ann))
      head_boxes = _load_head_boxes(
          os.path.join(root, mat) if mat else None, entries)
      splits[split] = self._generate_examples(
          entries, head_boxes, ann, os.path.join(root, cfg.image_dir))
    return splits

  def _generate_examples(self, entries: list, head_boxes: np.ndarray,
                         source: str, image_dir: str):
    k = keypoints_lib.get_spec(self.builder_config.keypoints).num_keypoints
    by_image = collections.defaultdict(list)  # image name -> entry indices
    for i, entry in enumerate(entries):
      name = entry.get('image') if isinstance(entry, dict) else None
      by_image[name if isinstance(name, str) else None].append(i)
    rejected = records.Rejections(source)
    for image_id, (name, indices) in enumerate(by_image.items(), start=1):
      if name is None:
        for i in indices:
          rejected.add('entry without an image name', f'entry {i}')
        continue
      try:
        image = records.read_image(os.path.join(image_dir, name))
      except records.Rejected as e:
        for i in indices:
          rejected.add(str(e), f'{name} (entry {i})')
        continue
      objects = []
      for i in indices:
        try:
          objects.append(parse_person(entries[i], i, k, image, head_boxes[i]))
        except records.Rejected as e:
          rejected.add(str(e), f'{name} (entry {i})')
      if objects:
        yield name, {
            'image': image.data,
            'image/id': image_id,
            'image/filename': name,
            'objects': records.stack_objects(objects, k),
        }
    rejected.log_summary()


def _load_entries(path: str) -> list:
  with open(path) as f:
    try:
      entries = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f'{path} is not valid json: {e}') from None
  if not isinstance(entries, list):
    raise ValueError(
        f'{path} should hold a list of person entries (the HRNet MPII json '
        f'format), not a {type(entries).__name__}.')
  return entries


def parse_person(entry: Any, index: int, num_joints: int,
                 image: records.ImageFile, head_box: np.ndarray) -> dict:
  """One json person entry -> a record object; raises records.Rejected."""
  if not isinstance(entry, dict) or not all(
      key in entry for key in ('joints', 'joints_vis', 'center', 'scale')):
    raise records.Rejected('missing field')
  joints = _numbers(entry['joints'])
  joints_vis = _numbers(entry['joints_vis'])
  center = _numbers(entry['center'])
  scale = _numbers(entry['scale'])
  if joints.shape != (num_joints, 2) or joints_vis.shape != (num_joints,):
    raise records.Rejected(f'expected {num_joints} joints')
  if center.shape != (2,) or np.ndim(scale) != 0:
    raise records.Rejected('center is not [x, y] or scale not a number')
  if np.any((joints_vis != 0) & (joints_vis != 1)):
    raise records.Rejected('joints_vis outside {0, 1}')
  if not np.all(np.isfinite(center)) or not np.isfinite(scale):
    raise records.Rejected('non-finite value')
  center = center - 1.0  # 1-based MATLAB -> 0-based
  side = float(scale) * PIXEL_STD
  return records.make_object(
      object_id=index + 1,
      keypoints=joints - 1.0,
      visibility=np.where(joints_vis > 0, 2, 0),
      bbox=[center[0] - side / 2, center[1] - side / 2, side, side],
      image_size=(image.height, image.width),
      center=center.astype(np.float32),
      scale=np.float32(scale),
      head_box=np.asarray(head_box, np.float32),
  )


def _numbers(value: Any) -> np.ndarray:
  """A json number or nested list of numbers as float64.

  Strings, booleans and nulls are rejected rather than coerced: they mean the
  file is not what this builder expects.
  """
  def numeric(v):
    if isinstance(v, list):
      return all(numeric(x) for x in v)
    return isinstance(v, (int, float)) and not isinstance(v, bool)
  if not numeric(value):
    raise records.Rejected('non-numeric value')
  try:
    return np.asarray(value, np.float64)
  except ValueError:  # ragged nesting
    raise records.Rejected('malformed array') from None


def _load_head_boxes(mat_path: str | None, entries: list) -> np.ndarray:
  """(N, 4) 0-based head boxes per json entry, NaN where none is known."""
  n = len(entries)
  boxes = np.full((n, 4), np.nan, np.float32)
  if mat_path is None:
    return boxes
  if not os.path.exists(mat_path):
    logging.warning(
        'MPII: %s not found; head_box is NaN for these %d people, so PCKh '
        'cannot be computed on them (see MANUAL_DOWNLOAD_INSTRUCTIONS).',
        mat_path, n)
    return boxes
  import scipy.io  # pylint: disable=g-import-not-at-top  (only MPII needs it)
  try:
    mat = scipy.io.loadmat(mat_path)
  except Exception as e:  # pylint: disable=broad-except
    # scipy's reader fails on a damaged file with whatever error it meets
    # first (IndexError, ValueError, MatReadError, ...); head boxes are
    # optional, so the build goes on without them.
    logging.warning('MPII: cannot read %s (%s); head_box is NaN for these %d '
                    'people.', mat_path, e, n)
    return boxes
  src = np.asarray(mat.get('headboxes_src', np.zeros(0)), np.float64)
  if src.shape != (2, 2, n):
    logging.warning(
        'MPII: %s has headboxes_src of shape %s, expected (2, 2, %d) to match '
        'the %d json entries; head_box is NaN for all of them.',
        mat_path, src.shape, n, n)
    return boxes
  # headboxes_src[corner, xy, person], 1-based -> (x1, y1, x2, y2) 0-based.
  boxes = np.concatenate([src[0].T, src[1].T], axis=1).astype(np.float32) - 1.0
  mismatched = _entries_not_matching_mat(mat, entries)
  if mismatched:
    boxes[mismatched] = np.nan
    logging.warning(
        'MPII: %s: %d entr(y/ies) whose joints differ from pos_gt_src (the '
        'files are out of order or from different releases); their head_box '
        'is NaN, e.g. entry %d.', mat_path, len(mismatched), mismatched[0])
  return boxes


def _entries_not_matching_mat(mat: dict, entries: list) -> list[int]:
  """Json entries whose labelled joints differ from the .mat's pos_gt_src."""
  pos = mat.get('pos_gt_src')
  if pos is None:
    return []
  pos = np.asarray(pos, np.float64)  # (joints, xy, person), 1-based
  if 'jnt_missing' in mat:
    present = np.asarray(mat['jnt_missing']) == 0  # (joints, person)
  else:
    present = np.ones((pos.shape[0], pos.shape[2]), bool)
  bad = []
  for i, entry in enumerate(entries):
    try:
      joints = _numbers(entry['joints'])
      vis = _numbers(entry['joints_vis']) > 0
      if joints.shape != pos.shape[:2]:
        continue  # rejected when the entry itself is parsed
      both = vis & present[:, i] & np.all(np.isfinite(pos[:, :, i]), axis=1)
      if np.any(np.abs(joints[both] - pos[both, :, i]) > _HEAD_BOX_MATCH_TOLERANCE):
        bad.append(i)
    except (records.Rejected, KeyError, TypeError, IndexError):
      continue
  return bad
