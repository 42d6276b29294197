"""What every keypoint builder does the same way: images, objects, rejections.

The builders differ in how they parse their upstream format; they agree on
the record schema (docs/conventions.md) and on how bad input is treated. A row that
cannot become a valid object raises `Rejected` with a short, fixed reason; the
builder hands it to `Rejections`, which logs where it was (file and row) and,
at the end of the split, one warning per reason with its count and the first
example. Nothing is silently dropped and no bad row stops a build halfway.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import hashlib
import os
from typing import Any, Iterable, Iterator

from absl import logging
import cv2
import numpy as np
import tensorflow_datasets as tfds

# A labelled keypoint may lie outside the image (a truncated limb, a face at
# the border) but not by more than this fraction of the image size: further
# out it is a coordinate-system or parsing error, not an annotation.
OUTSIDE_MARGIN = 0.5

# Skipped rows logged one by one per reason; the summary counts all of them.
_ROWS_LOGGED_PER_REASON = 10


class Rejected(ValueError):
  """An input row that cannot become a record; the message is the reason."""


@dataclasses.dataclass(frozen=True)
class ImageFile:
  """Encoded image bytes, stored as published, and their decoded size."""

  data: bytes
  height: int
  width: int


def read_image(path: str) -> ImageFile:
  """Reads an image file and checks that it decodes.

  The size is taken without applying EXIF orientation, as TensorFlow decodes
  the stored bytes, so that keypoint bounds are checked in the frame the
  pipeline sees.

  Raises:
    Rejected: 'missing image' or 'undecodable image'.
  """
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except OSError:
    raise Rejected('missing image') from None
  decoded = cv2.imdecode(np.frombuffer(data, np.uint8),
                         cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
  if decoded is None or decoded.size == 0:
    raise Rejected('undecodable image')
  return ImageFile(data=data, height=decoded.shape[0], width=decoded.shape[1])


class Rejections:
  """Rows of one source file skipped while building a split, by reason."""

  def __init__(self, source: str):
    self.source = source
    self._count: dict[str, int] = collections.Counter()
    self._example: dict[str, str] = {}

  def add(self, reason: str, where: str) -> None:
    """Records one skipped row; `where` locates it ('line 12', 'id 7', ...)."""
    self._count[reason] += 1
    self._example.setdefault(reason, where)
    if self._count[reason] <= _ROWS_LOGGED_PER_REASON:
      logging.info('%s, %s: skipped (%s).', self.source, where, reason)

  @property
  def counts(self) -> dict[str, int]:
    return dict(self._count)

  def log_summary(self) -> None:
    """One warning per reason: file, count, reason and the first example."""
    for reason, count in self._count.items():
      logging.warning('%s: skipped %d record(s) (%s), e.g. %s.',
                      self.source, count, reason, self._example[reason])


def check_manual_files(root: str, required: Iterable[str], dataset: str,
                       instructions: str) -> None:
  """Raises FileNotFoundError naming every required path missing under root."""
  missing = [p for p in required if not os.path.exists(os.path.join(root, p))]
  if missing:
    raise FileNotFoundError(
        f'{dataset} manual_dir {root} is incomplete; missing: {missing}.\n'
        + instructions)


def in_holdout(key: str, fraction: float) -> bool:
  """Whether `key` falls in a held-out fraction, the same on every machine.

  A hash of the key (not Python's salted `hash`, not the row order) decides,
  so the split survives reordered or appended rows and rebuilds.
  """
  digest = hashlib.md5(key.encode('utf-8')).digest()
  return int.from_bytes(digest[:8], 'big') / 2.0**64 < fraction


def object_features(num_keypoints: int, **extras) -> tfds.features.Sequence:
  """The `objects` feature of the schema, plus dataset-specific `extras`."""
  k = num_keypoints
  return tfds.features.Sequence({
      'id': np.int64,
      'bbox': tfds.features.Tensor(shape=(4,), dtype=np.float32),
      'keypoints': tfds.features.Tensor(shape=(k, 2), dtype=np.float32),
      'visibility': tfds.features.Tensor(shape=(k,), dtype=np.int32),
      'area': np.float32,
      'iscrowd': np.int32,
      'num_keypoints': np.int32,
      **extras,
  })


def record_features(objects: tfds.features.Sequence,
                    image_format: str = 'jpeg') -> tfds.features.FeaturesDict:
  """The whole record: image, its id and file name, and the objects."""
  return tfds.features.FeaturesDict({
      'image': tfds.features.Image(shape=(None, None, 3),
                                   encoding_format=image_format),
      'image/id': np.int64,
      'image/filename': tfds.features.Text(),
      'objects': objects,
  })


def csv_rows(path: str) -> Iterator[tuple[int, list[str] | None]]:
  """(line number, cells) per non-empty data row of a csv file with a header.

  A row the csv module cannot read (a field over its size limit, a stray
  quote) comes back as None, so the caller can reject that row and go on.
  """
  with open(path, newline='') as f:
    reader = csv.reader(f)
    next(reader, None)
    while True:
      try:
        row = next(reader)
      except StopIteration:
        return
      except csv.Error:
        yield reader.line_num, None
        continue
      if row:
        yield reader.line_num, row


def csv_header(path: str) -> list[str]:
  with open(path, newline='') as f:
    return next(csv.reader(f), [])


def parse_floats(values: Iterable[str], what: str = 'value') -> np.ndarray:
  """Strings -> float64 array; Rejected('non-numeric ...') otherwise."""
  try:
    return np.asarray([float(v) for v in values], np.float64)
  except (TypeError, ValueError):
    raise Rejected(f'non-numeric {what}') from None


def make_object(*, object_id: int, keypoints: Any, visibility: Any, bbox: Any,
                image_size: tuple[int, int], area: float | None = None,
                **extras) -> dict[str, Any]:
  """One validated object of the schema.

  Args:
    object_id: unique within the split.
    keypoints: (K, 2) 0-based pixels; ignored where visibility is 0.
    visibility: (K,) COCO flags 0/1/2.
    bbox: (x, y, w, h) pixels.
    image_size: (height, width) of the decoded image.
    area: defaults to the box area.
    **extras: dataset-specific fields, stored as given.

  Raises:
    Rejected: a non-finite labelled coordinate or box, a box without area, a
      visibility outside {0, 1, 2}, or a labelled keypoint far outside the
      image (OUTSIDE_MARGIN).
  """
  keypoints = np.asarray(keypoints, np.float64)
  visibility = np.asarray(visibility)
  bbox = np.asarray(bbox, np.float64)
  if np.any((visibility < 0) | (visibility > 2)):
    raise Rejected('visibility outside {0, 1, 2}')
  labelled = visibility > 0
  if not (np.all(np.isfinite(keypoints[labelled])) and np.all(np.isfinite(bbox))):
    raise Rejected('non-finite value')
  if bbox[2] <= 0 or bbox[3] <= 0:
    raise Rejected('zero-area box')
  height, width = image_size
  low = -OUTSIDE_MARGIN * np.array([width, height])
  high = (1.0 + OUTSIDE_MARGIN) * np.array([width, height])
  xy = keypoints[labelled]
  if np.any((xy < low) | (xy > high)):
    raise Rejected('keypoint far outside the image')
  return {
      'id': np.int64(object_id),
      'bbox': bbox.astype(np.float32),
      'keypoints': np.where(labelled[:, None], keypoints, 0.0).astype(np.float32),
      'visibility': visibility.astype(np.int32),
      'area': np.float32(bbox[2] * bbox[3] if area is None else area),
      'iscrowd': np.int32(0),
      'num_keypoints': np.int32(labelled.sum()),
      **extras,
  }


def stack_objects(objects: list[dict], num_keypoints: int,
                  extras: dict[str, tuple[tuple[int, ...], Any]] | None = None
                  ) -> dict[str, np.ndarray]:
  """Objects -> the `objects` sequence; every field exists even when empty.

  `extras` gives (shape, dtype) of each dataset-specific field for the empty
  case, which has nothing to take them from.
  """
  if objects:
    return {key: np.stack([o[key] for o in objects]) for key in objects[0]}
  k = num_keypoints
  fields = {
      'id': ((), np.int64), 'bbox': ((4,), np.float32),
      'keypoints': ((k, 2), np.float32), 'visibility': ((k,), np.int32),
      'area': ((), np.float32), 'iscrowd': ((), np.int32),
      'num_keypoints': ((), np.int32), **(extras or {}),
  }
  return {key: np.zeros((0, *shape), dtype) for key, (shape, dtype) in fields.items()}
