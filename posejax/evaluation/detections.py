"""Person-detection boxes for top-down evaluation (`config.eval.boxes`).

The official COCO evaluation predicts one crop per person detection rather
than per annotated box; this reads the detector's results file. The crops
themselves are made by `posejax.data.pipeline.eval_dataset(detections=...)`.
"""

from __future__ import annotations

import json
import os

from absl import logging
import numpy as np

# COCO category of the detections used as boxes.
PERSON_CATEGORY_ID = 1


def detection_file(config) -> str | None:
  """The person-detection results file of `config.eval.boxes`, or None.

  'ground_truth' (the default) means the annotated boxes. Any other value is
  the path of a COCO detection results file; a relative path is taken
  relative to `dataset.manual_dir`, where the recipes expect it.
  """
  boxes = config.eval.boxes or 'ground_truth'
  if boxes == 'ground_truth':
    return None
  path = os.path.expanduser(boxes)
  if not os.path.isabs(path):
    path = os.path.join(os.path.expanduser(config.dataset.manual_dir), path)
  return path


def missing_file_message(path: str) -> str:
  """What to do when the detection file of eval.boxes is not there."""
  return (f'eval.boxes: no detection results file at {path}. Set '
          '--config.eval.boxes to the file (relative paths are taken from '
          'dataset.manual_dir; the official HRNet person detections, '
          'COCO_val2017_detections_AP_H_56_person.json, are linked from '
          'github.com/leoxiaobin/deep-high-resolution-net.pytorch under "Data '
          "preparation\"), or to 'ground_truth' for the annotated boxes.")


def load_detections(path: str, score_threshold: float = 0.0
                    ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
  """Person boxes of a COCO detection results file, by image id.

  The file is a json list of `{"image_id", "category_id", "bbox": [x, y, w,
  h], "score"}` (the COCO results format, e.g. the official HRNet
  COCO_val2017_detections_AP_H_56_person.json). Kept: category 1 (person)
  with score >= `score_threshold` (TEST.IMAGE_THRE of the official code, 0.0)
  and a box of positive width and height, in file order.

  Returns:
    image id -> (boxes (n, 4) float32, scores (n,) float32).

  Raises:
    FileNotFoundError: no such file.
    ValueError: the file is not a list of such entries.
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(missing_file_message(path))
  with open(path) as f:
    try:
      entries = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f'{path} is not valid json: {e}') from None
  fields = ('image_id', 'category_id', 'bbox', 'score')
  if not isinstance(entries, list) or any(
      not isinstance(e, dict) or any(k not in e for k in fields) for e in entries):
    raise ValueError(
        f'{path} should be a COCO detection results file: a json list of '
        f'{{{", ".join(fields)}}} entries.')
  by_image: dict[int, list] = {}
  degenerate = 0
  for e in entries:
    if e['category_id'] != PERSON_CATEGORY_ID or e['score'] < score_threshold:
      continue
    box = np.asarray(e['bbox'], np.float32)
    if box.shape != (4,) or not np.all(np.isfinite(box)) or min(box[2], box[3]) <= 0:
      degenerate += 1  # no crop can be made of it
      continue
    by_image.setdefault(int(e['image_id']), []).append((box, e['score']))
  if degenerate:
    logging.warning('%s: skipped %d person detection(s) without a positive '
                    'finite box.', path, degenerate)
  return {
      image_id: (np.stack([b for b, _ in dets]),
                 np.asarray([s for _, s in dets], np.float32))
      for image_id, dets in by_image.items()
  }
