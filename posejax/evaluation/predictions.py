"""`Predictions`: what prediction hands to post-processing and the scorers."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping

import numpy as np

from posejax.evaluation import coco


@dataclasses.dataclass(frozen=True)
class Predictions:
  """One row per predicted instance (numpy arrays, N first).

  Coordinates are (x, y) pixels of the original image unless the name says
  `_input` (network input pixels); see docs/conventions.md.
  """

  image_id: np.ndarray        # (N,) int64
  keypoints: np.ndarray       # (N, K, 2) predicted, image pixels
  keypoints_input: np.ndarray  # (N, K, 2) predicted, input pixels
  scores: np.ndarray          # (N, K) per-keypoint confidence
  gt_keypoints: np.ndarray    # (N, K, 2) annotated, image pixels (0 for detections)
  visibility: np.ndarray      # (N, K) COCO visibility of the annotation
  bbox: np.ndarray            # (N, 4) the box the crop was made from (x, y, w, h)
  center: np.ndarray          # (N, 2) crop centre, image pixels
  scale: np.ndarray           # (N, 2) crop size (w, h), image pixels
  box_score: np.ndarray       # (N,) 1 for annotated boxes, else the detector's
  # Whether each row is an annotated object (its ground truth is the row's own)
  # or a person detection (scored against every annotation by the COCO metric).
  ground_truth_boxes: bool = True
  # (N,) box score x mean keypoint score above 0.2 (`postprocess.postprocess`).
  instance_score: np.ndarray | None = None
  # Dataset-specific per-instance fields, those its builder names in
  # EVAL_EXTRAS: `head_box` (MPII), `category` (FashionAI), `attributes` (WFLW).
  extras: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)

  def __len__(self) -> int:
    return len(self.image_id)

  def take(self, rows) -> Predictions:
    """The instances at `rows` (indices or a boolean mask), every field alike."""
    taken = {}
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if isinstance(value, np.ndarray):
        value = value[rows]
      elif field.name == 'extras':
        value = {k: v[rows] for k, v in value.items()}
      taken[field.name] = value
    return Predictions(**taken)

  @functools.cached_property
  def coco_results(self) -> list[dict]:
    """The instances as COCO keypoint results (results.json, pycocotools)."""
    scores = (self.instance_score if self.instance_score is not None
              else np.ones(len(self)))
    return coco.keypoint_results(self.image_id, self.keypoints, self.scores, scores)

  def replace(self, **changes) -> Predictions:
    return dataclasses.replace(self, **changes)
