"""Per-dataset keypoint metadata: names, flip pairs, OKS sigmas, skeleton, colours.

This is the only place that knows what keypoint index means what. Everything else
(augmentation, flip test, metrics, drawing) asks a `KeypointSpec`.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class KeypointSpec:
  """Static description of one dataset's keypoints."""

  name: str
  keypoint_names: tuple[str, ...]
  # Pairs (left, right) that swap under a horizontal flip.
  flip_pairs: tuple[tuple[int, int], ...]
  # Edges drawn between keypoints, 0-based.
  skeleton: tuple[tuple[int, int], ...]
  # Per-keypoint OKS sigmas (COCO convention: kappa = 2 * sigma), or None.
  oks_sigmas: tuple[float, ...] | None = None
  # Keypoints of the upper body, for half-body augmentation; the rest is lower.
  upper_body_ids: tuple[int, ...] = ()

  @property
  def num_keypoints(self) -> int:
    return len(self.keypoint_names)

  @property
  def flip_index(self) -> np.ndarray:
    """Permutation p such that flipped[k] = original[p[k]]."""
    index = np.arange(self.num_keypoints)
    for a, b in self.flip_pairs:
      index[a], index[b] = b, a
    return index

  @property
  def lower_body_ids(self) -> tuple[int, ...]:
    upper = set(self.upper_body_ids)
    return tuple(k for k in range(self.num_keypoints) if k not in upper)

  def index(self, keypoint_name: str) -> int:
    return self.keypoint_names.index(keypoint_name)

  def colors(self) -> np.ndarray:
    """One BGR colour per keypoint: left side warm, right side cool, centre green."""
    colors = np.zeros((self.num_keypoints, 3), np.uint8)
    for k, name in enumerate(self.keypoint_names):
      if name.startswith('left'):
        colors[k] = (0, 128, 255)
      elif name.startswith('right'):
        colors[k] = (255, 128, 0)
      else:
        colors[k] = (0, 220, 0)
    return colors


# COCO 2017 person keypoints. Sigmas from the COCO keypoint evaluation
# (cocodataset.org/#keypoints-eval); skeleton from the COCO annotation file,
# converted to 0-based indices.
COCO = KeypointSpec(
    name='coco',
    keypoint_names=(
        'nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear',
        'left_shoulder', 'right_shoulder', 'left_elbow', 'right_elbow',
        'left_wrist', 'right_wrist', 'left_hip', 'right_hip',
        'left_knee', 'right_knee', 'left_ankle', 'right_ankle'),
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14),
                (15, 16)),
    skeleton=((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11),
              (6, 12), (5, 6), (5, 7), (6, 8), (7, 9), (8, 10), (1, 2), (0, 1),
              (0, 2), (1, 3), (2, 4), (3, 5), (4, 6)),
    oks_sigmas=(0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
                0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089),
    upper_body_ids=tuple(range(11)),
)

DATASETS: dict[str, KeypointSpec] = {'coco': COCO}


def get_spec(name: str) -> KeypointSpec:
  if name not in DATASETS:
    raise ValueError(
        f'Unknown keypoint layout {name!r}; known: {sorted(DATASETS)}. '
        'Add it to posejax/keypoints.py.')
  return DATASETS[name]
