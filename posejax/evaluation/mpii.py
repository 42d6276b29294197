"""MPII Human Pose PCKh, as the MPII benchmark and HRNet evaluation score it.

Definition (Andriluka et al., "2D Human Pose Estimation: New Benchmark and
State of the Art Analysis", CVPR 2014; the MPII evaluation toolkit; and
`MPIIDataset.evaluate` in deep-high-resolution-net.pytorch
lib/dataset/mpii.py):

  head size  = SC_BIAS * ||(x2 - x1, y2 - y1)||, SC_BIAS = 0.6, i.e. 0.6 times
               the diagonal of the annotated head box;
  correct    = ||pred - gt|| <= threshold * head size (boundary inclusive);
  counted    = the joint is annotated (the official code's `1 - jnt_missing`;
               here visibility > 0, occluded joints included).

Per joint, PCKh is correct / counted over the whole set, in percent. A group
(Shoulder, Elbow, ...) is the plain average of its joints' PCKh values, e.g.
Shoulder = (PCKh[l_shoulder] + PCKh[r_shoulder]) / 2, as in the official
table; Head is head_top alone. "Mean" is pooled over every counted joint
*except* pelvis and thorax (joints 6 and 7, masked out by the official code),
which equals the official count-weighted average of the per-joint values
(when a joint is never labelled the official value is nan; the pooled mean
simply has nothing of it to count).
upper_neck (8) and head_top (9) stay in the mean although only head_top has a
group. "Mean_all" pools over all 16 joints; it is not an official number.

The HRNet code's "Mean@0.1" reads row 11 of its table of thresholds
0, 0.01, ..., 0.5, i.e. threshold 0.11, not 0.1. `mpii_pckh` uses exactly the
thresholds it is given: pass 0.11 to reproduce that column.

The official code compares error / head size <= threshold; this module
compares error <= threshold * head size (`pck.pck`). The two differ only when
rounding lands exactly on the boundary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from absl import logging
import numpy as np

from posejax import keypoints as keypoints_lib
from posejax.evaluation import pck as pck_lib

_joint = keypoints_lib.MPII.index

# Groups of the official results table, in its order; each value is the
# average of its joints' PCKh (indices in the MPII order, keypoints.MPII).
MPII_GROUPS: dict[str, tuple[int, ...]] = {
    'Head': (_joint('head_top'),),
    'Shoulder': (_joint('left_shoulder'), _joint('right_shoulder')),
    'Elbow': (_joint('left_elbow'), _joint('right_elbow')),
    'Wrist': (_joint('left_wrist'), _joint('right_wrist')),
    'Hip': (_joint('left_hip'), _joint('right_hip')),
    'Knee': (_joint('left_knee'), _joint('right_knee')),
    'Ankle': (_joint('left_ankle'), _joint('right_ankle')),
}

# Joints left out of the official "Mean": pelvis and thorax.
MPII_MEAN_EXCLUDED: tuple[int, ...] = (_joint('pelvis'), _joint('thorax'))

# Head size = SC_BIAS x head-box diagonal (the MPII toolkit's constant).
SC_BIAS = 0.6


def head_size(head_boxes: np.ndarray) -> np.ndarray:
  """SC_BIAS (0.6) times the diagonal of each head box.

  Args:
    head_boxes: (N, 4) head boxes (x1, y1, x2, y2) in pixels. The corner
      order does not matter: only |x2 - x1| and |y2 - y1| are used.

  Returns:
    (N,) float64 head sizes.
  """
  head_boxes = np.asarray(head_boxes, np.float64)
  if head_boxes.ndim != 2 or head_boxes.shape[1] != 4:
    raise ValueError(
        f'head_size expects head boxes (N, 4) as (x1, y1, x2, y2); got '
        f'{head_boxes.shape}.')
  diagonal = np.linalg.norm(head_boxes[:, 2:] - head_boxes[:, :2], axis=1)
  return SC_BIAS * diagonal


def pckh(pred: np.ndarray,
         gt: np.ndarray,
         visibility: np.ndarray,
         head_boxes: np.ndarray,
         threshold: float = 0.5,
         groups: Mapping[str, Sequence[int]] | None = None,
         mean_excluded: Sequence[int] = MPII_MEAN_EXCLUDED) -> dict[str, Any]:
  """PCKh at one threshold, with the official groups and mean.

  Args:
    pred: (N, K, 2) predicted (x, y), K = 16 in the MPII order for the
      default groups.
    gt: (N, K, 2) ground-truth (x, y).
    visibility: (N, K) COCO visibility; joints with visibility > 0 count.
    head_boxes: (N, 4) head boxes (x1, y1, x2, y2).
    threshold: fraction of the head size (0.5 for PCKh@0.5).
    groups: name -> joint indices; each group reports the unweighted mean of
      its joints' PCKh. Defaults to `MPII_GROUPS`.
    mean_excluded: joints left out of 'Mean' (pelvis, thorax by default).

  Returns:
    {'Head', 'Shoulder', 'Elbow', 'Wrist', 'Hip', 'Knee', 'Ankle' (or the
     given group names): float percent,
     'Mean': float percent pooled over counted joints not in mean_excluded,
     'Mean_all': float percent pooled over all counted joints,
     'per_joint': (K,) float64 percent (nan where a joint never counts),
     'count': counted joints in 'Mean', 'count_all': counted joints in all}.
    A group with a joint that never counts is nan; so is a mean over nothing.

  Raises:
    ValueError: mismatched shapes, a group index out of range, or a
      non-positive head size for an instance with labelled joints.
  """
  groups = MPII_GROUPS if groups is None else groups
  head_boxes = np.asarray(head_boxes, np.float64)
  visibility = np.asarray(visibility)
  if head_boxes.ndim != 2 or head_boxes.shape[1] != 4:
    raise ValueError(
        f'pckh expects head boxes (N, 4) as (x1, y1, x2, y2); got '
        f'{head_boxes.shape}.')
  if visibility.ndim != 2 or head_boxes.shape[0] != visibility.shape[0]:
    raise ValueError(
        f'pckh expects visibility (N, K) and head boxes (N, 4) with the same '
        f'N; got {visibility.shape} and {head_boxes.shape}.')
  num_joints = visibility.shape[1]
  used = [j for joints in groups.values() for j in joints]
  used += list(mean_excluded)
  if any(not 0 <= j < num_joints for j in used):
    raise ValueError(
        f'pckh: joint indices {sorted(set(used))} do not all fit K = '
        f'{num_joints} joints; pass groups and mean_excluded for this layout.')

  sizes = head_size(head_boxes)
  everything = pck_lib.pck(pred, gt, visibility, sizes, threshold)
  kept = visibility.copy()
  kept[:, list(mean_excluded)] = 0
  official = pck_lib.pck(pred, gt, kept, sizes, threshold)

  per_joint = 100.0 * everything['per_keypoint']
  out: dict[str, Any] = {
      name: float(np.mean(per_joint[list(joints)]))
      for name, joints in groups.items()
  }
  out['Mean'] = 100.0 * official['mean']
  out['Mean_all'] = 100.0 * everything['mean']
  out['per_joint'] = per_joint
  out['count'] = official['count']
  out['count_all'] = everything['count']
  return out


def mpii_pckh(pred: np.ndarray,
              gt: np.ndarray,
              visibility: np.ndarray,
              head_boxes: np.ndarray,
              thresholds: Sequence[float] = (0.5, 0.1),
              groups: Mapping[str, Sequence[int]] | None = None,
              mean_excluded: Sequence[int] = MPII_MEAN_EXCLUDED,
              ) -> dict[str, dict[str, Any]]:
  """PCKh at several thresholds: {'PCKh@0.5': pckh(...), 'PCKh@0.1': ...}.

  Args and the per-threshold dicts are as in `pckh`; the keys are
  f'PCKh@{threshold:g}'.
  """
  return {
      f'PCKh@{t:g}': pckh(pred, gt, visibility, head_boxes, t, groups,
                          mean_excluded)
      for t in thresholds
  }


def score(predictions, spec, ground_truth) -> dict[str, float]:
  """The 'pckh' metric of `evaluation.METRICS`: PCKh@0.5 and @0.1 from `extras['head_box']`.

  Official means (`PCKh@0.5`), per group (`PCKh@0.5/Wrist`) and over all
  joints (`PCKh@0.5/Mean_all`). People without a head box are not scored.
  """
  del spec, ground_truth  # the layout is MPII's; the predictions carry the truth
  head_boxes = predictions.extras.get('head_box')
  known = (np.all(np.isfinite(head_boxes), axis=1) if head_boxes is not None
           else np.zeros(len(predictions), bool))
  if not known.any():
    raise ValueError(
        'PCKh needs head boxes, and no evaluated person has one (MPII: put '
        'gt_valid.mat in <manual_dir>/annot/ and rebuild the records).')
  if not known.all():
    logging.warning('PCKh: %d of %d people have no head box and are not '
                    'scored.', int((~known).sum()), len(known))
  scored = predictions.take(known)
  tables = mpii_pckh(scored.keypoints, scored.gt_keypoints, scored.visibility,
                     head_boxes[known], (0.5, 0.1))
  metrics = {}
  for name, table in tables.items():
    metrics[name] = table['Mean']
    metrics.update({f'{name}/{group}': table[group] for group in MPII_GROUPS})
    metrics[f'{name}/Mean_all'] = table['Mean_all']
  return metrics
