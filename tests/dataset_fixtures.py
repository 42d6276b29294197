"""Small datasets written in their exact upstream formats, for tests.

The builder tests (tests/data/) use the low-level writers to lay out files
with deliberately bad rows; the recipe tests (tests/test_recipes.py) use the
`write_*_dataset` functions, which lay out a few valid examples of each
dataset as it is downloaded. Nothing here is ever downloaded.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os

from absl import logging as absl_logging
import cv2
import numpy as np
import scipy.io

from posejax import keypoints as keypoints_lib
from posejax.data import records


@contextlib.contextmanager
def captured_warnings():
  """Warnings logged through absl (caplog is per test; a build is per module)."""
  messages = []
  handler = logging.Handler(logging.WARNING)
  handler.emit = lambda record: messages.append(record.getMessage())
  logger = absl_logging.get_absl_logger()
  logger.addHandler(handler)
  try:
    yield messages
  finally:
    logger.removeHandler(handler)


def write_image(path: str, height: int, width: int, value=None, seed: int = 0):
  """A JPEG/PNG (by extension): flat grey `value`, or random pixels."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  if value is None:
    image = np.random.default_rng(seed).integers(0, 255, (height, width, 3),
                                                 dtype=np.uint8)
  else:
    image = np.full((height, width, 3), value, np.uint8)
  assert cv2.imwrite(path, image), path


def _inside(rng, num, height, width, margin=4):
  """`num` (x, y) points at least `margin` pixels inside an image."""
  return np.round(rng.uniform([margin, margin], [width - margin, height - margin],
                              (num, 2)), 2)


# -------------------------------------------------------------------- COCO

def coco_person(ann_id, image_id, kps, bbox, iscrowd=0) -> dict:
  """A person annotation as in person_keypoints_*2017.json."""
  kps = np.asarray(kps, float).reshape(17, 3)
  return {'id': ann_id, 'image_id': image_id, 'category_id': 1, 'bbox': bbox,
          'area': bbox[2] * bbox[3] * 0.5, 'iscrowd': iscrowd,
          'num_keypoints': int((kps[:, 2] > 0).sum()),
          'keypoints': kps.reshape(-1).tolist()}


def write_coco_split(root, split, images, annotations):
  """annotations/person_keypoints_<split>2017.json and the <split>2017 folder."""
  os.makedirs(os.path.join(root, 'annotations'), exist_ok=True)
  os.makedirs(os.path.join(root, f'{split}2017'), exist_ok=True)
  with open(os.path.join(root, 'annotations',
                         f'person_keypoints_{split}2017.json'), 'w') as f:
    json.dump({'images': images, 'annotations': annotations,
               'categories': [{'id': 1, 'name': 'person'}]}, f)


# Where the COCO recipes expect the official person detections.
COCO_DETECTIONS = 'person_detection_results/COCO_val2017_detections_AP_H_56_person.json'


def write_coco_dataset(root, height=96, width=80) -> dict:
  """COCO 2017 layout: 3 train and 3 val images, 1-2 people each.

  Also writes person detections for val (COCO results format) at
  COCO_DETECTIONS: for image 1 a box on each person plus an exact duplicate
  of the first with a lower score (which OKS-NMS must merge), one box below
  score 0.3 and one of another category; image 2 one box; image 3 none.

  Returns {'val_people': {image_id: n}, 'detections': the list written}.
  """
  rng = np.random.default_rng(0)
  val_people = {}
  for split in ('train', 'val'):
    images, annotations = [], []
    for image_id in (1, 2, 3):
      name = f'{image_id:012d}.jpg'
      images.append({'id': image_id, 'file_name': name, 'width': width,
                     'height': height})
      write_image(os.path.join(root, f'{split}2017', name), height, width,
                  seed=image_id)
      people = 2 if image_id == 1 else 1
      for p in range(people):
        box = [4.0 + 36 * p, 6.0, 36.0, 80.0]
        kps = np.zeros((17, 3))
        kps[:, :2] = np.round(rng.uniform([box[0] + 2, box[1] + 2],
                                          [box[0] + box[2] - 2, box[1] + box[3] - 2],
                                          (17, 2)), 1)
        kps[:, 2] = 2
        kps[[3, 4], :] = 0  # ears unlabelled
        annotations.append(coco_person(10 * image_id + p, image_id, kps, box))
      if split == 'val':
        val_people[image_id] = people
    write_coco_split(root, split, images, annotations)
  detections = [
      {'image_id': 1, 'category_id': 1, 'bbox': [4.0, 6.0, 36.0, 80.0], 'score': 0.9},
      {'image_id': 1, 'category_id': 1, 'bbox': [40.0, 6.0, 36.0, 80.0], 'score': 0.8},
      {'image_id': 1, 'category_id': 1, 'bbox': [4.0, 6.0, 36.0, 80.0], 'score': 0.7},
      {'image_id': 1, 'category_id': 1, 'bbox': [10.0, 10.0, 20.0, 20.0], 'score': 0.1},
      {'image_id': 1, 'category_id': 2, 'bbox': [0.0, 0.0, 30.0, 30.0], 'score': 0.95},
      {'image_id': 2, 'category_id': 1, 'bbox': [3.0, 5.0, 38.0, 82.0], 'score': 0.6},
  ]
  path = os.path.join(root, COCO_DETECTIONS)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    json.dump(detections, f)
  return {'val_people': val_people, 'detections': detections}


# -------------------------------------------------------------------- MPII

def mpii_entry(image, joints, vis, center=(30.0, 20.0), scale=0.2) -> dict:
  """One person of HRNet's mpii_{train,valid}.json (1-based coordinates)."""
  return {'image': image, 'joints': np.asarray(joints).tolist(),
          'joints_vis': np.asarray(vis).tolist(), 'center': list(center),
          'scale': scale}


def write_mpii_json(root, name, entries):
  os.makedirs(os.path.join(root, 'annot'), exist_ok=True)
  with open(os.path.join(root, 'annot', name), 'w') as f:
    json.dump(entries, f)


def write_gt_valid_mat(path, head_boxes, joints, missing):
  """gt_valid.mat as the HRNet repository ships it, one column per person.

  head_boxes (2, 2, N) [corner, xy, person], joints (16, 2, N) and missing
  (16, N), all 1-based as in the file.
  """
  names = np.array([['rank', 'rkne', 'rhip', 'lhip', 'lkne', 'lank', 'pelv', 'thor',
                     'neck', 'head', 'rwri', 'relb', 'rsho', 'lsho', 'lelb', 'lwri']],
                   dtype=object)
  scipy.io.savemat(path, {
      'dataset_joints': names, 'jnt_missing': missing, 'pos_pred_src': joints,
      'pos_gt_src': joints, 'headboxes_src': head_boxes})


def write_mpii_dataset(root, height=96, width=80) -> dict:
  """MPII with HRNet's json annotations: 2 train and 2 valid images.

  The valid people (3, one image with two) have head boxes in gt_valid.mat;
  every joint is labelled except one per person. Returns the valid entries.
  """
  rng = np.random.default_rng(1)

  def person(image, x0):
    joints = _inside(rng, 16, height, width - 40) + [x0, 0] + 1.0  # 1-based
    vis = np.ones(16, int)
    vis[int(rng.integers(0, 16))] = 0
    joints[vis == 0] = -1.0
    centre = joints[vis > 0].mean(0)
    return mpii_entry(image, joints, vis, center=tuple(centre), scale=0.45)

  for i, name in enumerate(('000000001.jpg', '000000002.jpg', '000000003.jpg',
                            '000000004.jpg')):
    write_image(os.path.join(root, 'images', name), height, width, seed=10 + i)
  train = [person('000000001.jpg', 0), person('000000002.jpg', 30)]
  valid = [person('000000003.jpg', 0), person('000000003.jpg', 30),
           person('000000004.jpg', 10)]
  write_mpii_json(root, 'mpii_train.json', train)
  write_mpii_json(root, 'mpii_valid.json', valid)
  n = len(valid)
  heads = np.zeros((2, 2, n))
  joints = np.zeros((16, 2, n))
  missing = np.zeros((16, n))
  for i, entry in enumerate(valid):
    head = np.asarray(entry['joints'])[9]
    heads[:, :, i] = [head - [6, 8], head + [6, 8]]  # [corner, xy]
    joints[:, :, i] = entry['joints']
    missing[:, i] = 1 - np.asarray(entry['joints_vis'])
  write_gt_valid_mat(os.path.join(root, 'annot', 'gt_valid.mat'), heads, joints,
                     missing)
  return {'valid': valid}


# --------------------------------------------------------------- FashionAI

FASHIONAI_NAMES = keypoints_lib.FASHIONAI.keypoint_names


def fashionai_image_id(category, held_out, start=0) -> str:
  """An image path the builder puts in validation iff held_out (10% hash)."""
  i = start
  while records.in_holdout(f'Images/{category}/{i:04d}.jpg', 0.1) != held_out:
    i += 1
  return f'Images/{category}/{i:04d}.jpg'


def fashionai_cells(labels) -> list[str]:
  """24 x_y_v cells: `labels` name -> (x, y, v); other points -1_-1_-1."""
  return [('{}_{}_{}'.format(*labels[n]) if n in labels else '-1_-1_-1')
          for n in FASHIONAI_NAMES]


def write_fashionai_csv(root, rows, name='train.csv'):
  """Annotations/<name>: header, then (image_id, category, cells) rows."""
  os.makedirs(os.path.join(root, 'Annotations'), exist_ok=True)
  with open(os.path.join(root, 'Annotations', name), 'w') as f:
    f.write(','.join(['image_id', 'image_category', *FASHIONAI_NAMES]) + '\n')
    for image_id, category, cells in rows:
      f.write(','.join([image_id, category, *cells]) + '\n')


def write_fashionai_dataset(root, size=64) -> dict:
  """Dress and skirt images, train and held-out validation, every point visible.

  Returns {'rows': [(image_id, category, held_out)]}.
  """
  rng = np.random.default_rng(2)
  rows, written = [], []
  for category, count_train, count_val in (('dress', 3, 2), ('skirt', 1, 1)):
    names = [FASHIONAI_NAMES[k] for k in
             keypoints_lib.FASHIONAI_CATEGORY_KEYPOINTS[category]]
    start = 0
    for held_out, count in ((False, count_train), (True, count_val)):
      for _ in range(count):
        image_id = fashionai_image_id(category, held_out, start)
        start = int(image_id[-8:-4]) + 1
        points = np.round(_inside(rng, len(names), size, size, margin=6)).astype(int)
        labels = {n: (x, y, 1) for n, (x, y) in zip(names, points)}
        rows.append((image_id, category, fashionai_cells(labels)))
        written.append((image_id, category, held_out))
        write_image(os.path.join(root, image_id), size, size,
                    seed=len(written))
  write_fashionai_csv(root, rows)
  return {'rows': written}


# ------------------------------------------------------------ Kaggle faces

KAGGLE_NAMES = keypoints_lib.KAGGLE_FACES.keypoint_names
KAGGLE_HEADER = [f'{n}_{c}' for n in KAGGLE_NAMES for c in 'xy'] + ['Image']


def kaggle_pixels(seed, held_out=False):
  """A 96x96 grey image and its csv cell, in validation iff held_out."""
  rng = np.random.default_rng(seed)
  grey = rng.integers(0, 256, (96, 96))
  while True:
    cell = ' '.join(str(v) for v in grey.reshape(-1))
    if records.in_holdout(cell, 0.1) == held_out:
      return grey, cell
    grey[0, 0] = (grey[0, 0] + 1) % 256


def kaggle_coordinates(points) -> list[str]:
  """name -> (x, y) as the 30 coordinate cells, empty where not given."""
  return [f'{points[n][i]}' if n in points else ''
          for n in KAGGLE_NAMES for i in (0, 1)]


def write_kaggle_csvs(root, rows, test_rows):
  """training.csv (coordinate cells + Image) and test.csv (ImageId, Image)."""
  with open(os.path.join(root, 'training.csv'), 'w') as f:
    f.write('\n'.join(','.join(r) for r in [KAGGLE_HEADER] + rows) + '\n')
  with open(os.path.join(root, 'test.csv'), 'w') as f:
    f.write('\n'.join(','.join(r) for r in [['ImageId', 'Image']] + test_rows) + '\n')


def write_kaggle_faces_dataset(root) -> dict:
  """3 train and 2 validation faces, some with only 4 of the 15 points."""
  rng = np.random.default_rng(3)
  rows = []
  for seed, held_out, complete in ((0, False, True), (1, False, False),
                                   (2, False, True), (3, True, True),
                                   (4, True, False)):
    points = _inside(rng, 15, 96, 96, margin=8)
    keep = KAGGLE_NAMES if complete else KAGGLE_NAMES[:2] + ('nose_tip', 'mouth_center_bottom_lip')
    coordinates = {n: tuple(p) for n, p in zip(KAGGLE_NAMES, points) if n in keep}
    rows.append(kaggle_coordinates(coordinates) + [kaggle_pixels(seed, held_out)[1]])
  os.makedirs(root, exist_ok=True)
  write_kaggle_csvs(root, rows, [['1', kaggle_pixels(9)[1]]])
  return {'rows': len(rows)}


# -------------------------------------------------------------- WFLW, 300W

WFLW_LISTS = 'WFLW_annotations/list_98pt_rect_attr_train_test'


def wflw_line(points, rect, attributes, name) -> str:
  """One line of list_98pt_rect_attr_{train,test}.txt."""
  return ' '.join([*(f'{v:.6f}' for v in np.asarray(points).reshape(-1)),
                   *map(str, rect), *map(str, attributes), name])


def write_wflw_lists(root, train_lines, test_lines):
  os.makedirs(os.path.join(root, WFLW_LISTS), exist_ok=True)
  for split, lines in (('train', train_lines), ('test', test_lines)):
    with open(os.path.join(root, WFLW_LISTS, f'list_98pt_rect_attr_{split}.txt'),
              'w') as f:
      f.write('\n'.join(lines) + '\n')


def write_wflw_dataset(root, height=80, width=72) -> dict:
  """2 train and 3 test faces, the test faces with different attributes."""
  rng = np.random.default_rng(4)
  lines = {'train': [], 'test': []}
  attributes = {'train': [[0] * 6, [1, 0, 0, 0, 0, 0]],
                'test': [[1, 0, 0, 0, 1, 0], [0, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1]]}
  for split in ('train', 'test'):
    for i, flags in enumerate(attributes[split]):
      name = f'{i}--Event/{split}_{i}.jpg'
      write_image(os.path.join(root, 'WFLW_images', name), height, width,
                  seed=20 + i)
      points = _inside(rng, 98, height, width, margin=8)
      low, high = points.min(0), points.max(0)
      lines[split].append(wflw_line(points, [*np.floor(low).astype(int),
                                             *np.ceil(high).astype(int)], flags, name))
  write_wflw_lists(root, lines['train'], lines['test'])
  return {'test_attributes': attributes['test']}


IBUG_300W_FOLDERS = ('afw', 'helen/trainset', 'helen/testset', 'lfpw/trainset',
                     'lfpw/testset', 'ibug')


def pts_text(points) -> str:
  """An iBUG .pts file of `points` as written (1-based by convention)."""
  body = '\n'.join(f'{x:.3f} {y:.3f}' for x, y in points)
  return f'version: 1\nn_points:  {len(points)}\n{{\n{body}\n}}\n'


def write_300w_dataset(root, height=80, width=72) -> dict:
  """One face in each 300W folder (train: afw, helen and lfpw trainsets)."""
  rng = np.random.default_rng(5)
  for i, folder in enumerate(IBUG_300W_FOLDERS):
    write_image(os.path.join(root, folder, f'face_{i}.jpg'), height, width,
                seed=30 + i)
    with open(os.path.join(root, folder, f'face_{i}.pts'), 'w') as f:
      f.write(pts_text(_inside(rng, 68, height, width, margin=8) + 1))
  return {}


# config.dataset.name -> the writer of its fixture (tests/test_recipes.py).
WRITERS = {
    'coco_keypoints': write_coco_dataset,
    'mpii_human_pose': write_mpii_dataset,
    'fashionai_keypoints': write_fashionai_dataset,
    'kaggle_facial_keypoints': write_kaggle_faces_dataset,
    'wflw': write_wflw_dataset,
    'ibug_300w': write_300w_dataset,
}
