"""The declared batch schema: what the input pipeline hands the steps.

The top-down streams of `posejax.data.pipeline` make these, host-local
(numpy); `sharding.global_batch` turns them into global arrays; the train
step (`train_step`), the validation loss (`train.validation_loss`) and the
evaluation prediction (`evaluation.predict_split`) read them. Coordinates
follow docs/conventions.md: (x, y), 0-based pixels, the centre of the
top-left pixel is (0, 0). B is the batch, K the dataset's keypoints, (H, W)
the network input (`input.size`).

  field          dtype    shape       frame / meaning
  image          uint8    (B, H, W, 3) the RGB crop (the network input)
  keypoints      float32  (B, K, 2)   input pixels, through the crop (and its
                                      flip, with pairs swapped)
  visibility     int32    (B, K)      COCO: 0 unlabelled, 1 occluded, 2 visible
  image_id       int64    (B,)        the record's `image/id`
  instance_id    int64    (B,)        the object's `id` (a detection's index)
  bbox           float32  (B, 4)      the box the crop was made from, image
                                      pixels (x, y, w, h)
  center         float32  (B, 2)      crop centre, image pixels
  scale          float32  (B, 2)      crop size (w, h), image pixels
  box_score      float32  (B,)        1 for annotated boxes, else the detector's

An evaluation batch has these and

  gt_keypoints   float32  (B, K, 2)   the annotation, image pixels (zeros for
                                      detections)

plus the per-object fields its dataset's builder names in `EVAL_EXTRAS`
(`head_box` for MPII, `category` for FashionAI, `attributes` for WFLW).
The whole-image stream of bottom-up networks
(posejax/data/pipeline/whole_image.py) makes `WholeImageBatch`es, for
training and evaluation alike (P is `input.max_people`):

  field          dtype    shape          frame / meaning
  image          uint8    (B, H, W, 3)   the image warped to the input
  keypoints      float32  (B, P, K, 2)   input pixels, every person's (the
                                         padding's visibility is 0)
  visibility     int32    (B, P, K)      COCO
  ignore_mask    uint8    (B, H, W)      1 where nothing is supervised
                                         (crowds, people without keypoints)
  image_id       int64    (B,)
  center         float32  (B, 2)         the input square's centre and side
  scale          float32  (B, 2)         (w, h), image pixels
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypedDict

import numpy as np


class TrainBatch(TypedDict):
  image: np.ndarray
  keypoints: np.ndarray
  visibility: np.ndarray
  image_id: np.ndarray
  instance_id: np.ndarray
  bbox: np.ndarray
  center: np.ndarray
  scale: np.ndarray
  box_score: np.ndarray


class EvalBatch(TrainBatch):
  gt_keypoints: np.ndarray


# field -> (dtype, shape with 'B', 'K', 'H', 'W' for the sizes above).
TRAIN_FIELDS: Mapping[str, tuple[type, tuple]] = {
    'image': (np.uint8, ('B', 'H', 'W', 3)),
    'keypoints': (np.float32, ('B', 'K', 2)),
    'visibility': (np.int32, ('B', 'K')),
    'image_id': (np.int64, ('B',)),
    'instance_id': (np.int64, ('B',)),
    'bbox': (np.float32, ('B', 4)),
    'center': (np.float32, ('B', 2)),
    'scale': (np.float32, ('B', 2)),
    'box_score': (np.float32, ('B',)),
}
EVAL_FIELDS: Mapping[str, tuple[type, tuple]] = {
    **TRAIN_FIELDS,
    'gt_keypoints': (np.float32, ('B', 'K', 2)),
}


class WholeImageBatch(TypedDict):
  image: np.ndarray
  keypoints: np.ndarray
  visibility: np.ndarray
  ignore_mask: np.ndarray
  image_id: np.ndarray
  center: np.ndarray
  scale: np.ndarray


WHOLE_IMAGE_FIELDS: Mapping[str, tuple[type, tuple]] = {
    'image': (np.uint8, ('B', 'H', 'W', 3)),
    'keypoints': (np.float32, ('B', 'P', 'K', 2)),
    'visibility': (np.int32, ('B', 'P', 'K')),
    'ignore_mask': (np.uint8, ('B', 'H', 'W')),
    'image_id': (np.int64, ('B',)),
    'center': (np.float32, ('B', 2)),
    'scale': (np.float32, ('B', 2)),
}
assert set(TRAIN_FIELDS) == set(TrainBatch.__annotations__)
assert set(WHOLE_IMAGE_FIELDS) == set(WholeImageBatch.__annotations__)
assert set(EVAL_FIELDS) == set(EvalBatch.__annotations__)


def schema_errors(batch: Mapping[str, np.ndarray], fields: Mapping[str, tuple],
                  num_keypoints: int, input_size, extras=(),
                  max_people: int | None = None) -> list[str]:
  """What in `batch` differs from the schema `fields` (empty if nothing).

  `extras` are the dataset's EVAL_EXTRAS, allowed beside the declared
  fields with any shape.
  """
  errors = []
  missing = sorted(set(fields) - set(batch))
  unknown = sorted(set(batch) - set(fields) - set(extras))
  if missing:
    errors.append(f'missing fields {missing}')
  if unknown:
    errors.append(f'undeclared fields {unknown}')
  sizes = {'B': None, 'K': num_keypoints, 'H': input_size[0], 'W': input_size[1],
           'P': max_people}
  for name, (dtype, shape) in fields.items():
    if name not in batch:
      continue
    value = np.asarray(batch[name])
    if value.dtype != dtype:
      errors.append(f'{name}: dtype {value.dtype}, declared {np.dtype(dtype)}')
    if sizes['B'] is None and value.ndim:
      sizes['B'] = value.shape[0]
    expected = tuple(sizes.get(d, d) if isinstance(d, str) else d for d in shape)
    if value.shape != expected:
      errors.append(f'{name}: shape {value.shape}, declared {expected}')
  return errors
