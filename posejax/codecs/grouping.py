"""Grouping keypoint candidates into people by their tags (host, numpy/scipy).

The combinatorial half of associative-embedding decoding; the array half
(keypoint NMS, the top candidates, their tags and neighbours, and the
refinement's search over the maps) runs on device in
posejax/codecs/embedding.py. The steps and their constants follow the
official HigherHRNet `group.py` (`match_by_tag`, `HeatmapParser.adjust`,
`.refine`, `.parse`):

  match     joint by joint in the codec's order, candidates above
            `detection_threshold` join the people found so far by a minimum-
            cost assignment (`scipy.optimize.linear_sum_assignment`) on the
            cost round(tag distance) * 100 - heatmap value; an assignment at
            a tag distance of `tag_threshold` or more, or a candidate left
            over, starts a new person
  adjust    every grouped joint moves a quarter pixel toward its higher
            neighbour on each axis (away from the lower, on a tie)
  score     a person's score is the mean heatmap value over all K joints
            (0 for those not found), taken before the refinement
  refine    each joint a person lacks is looked for over the whole map, at
            the maximum of heatmap - round(distance to the person's mean
            tag), with the quarter step, and taken if its value is positive

One difference from the official code: there a new person is keyed by the
first component of its first tag, so two people whose first tags are the
same float become one; here people are kept in a list.

Positions are in the maps' pixels, on posejax's convention (pixel centres
at integers); the official code adds half a pixel for its own convention.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import optimize


@dataclasses.dataclass(frozen=True)
class People:
  """The people of one image, on the decoding maps' pixel grid.

  keypoints (P, K, 2) float32 map pixels (zeros where not found), scores
  (P, K) heatmap values (0 where not found), person_scores (P,), mean_tags
  (P, L) their mean tag over the found joints, and pixels (P, K, 2) int the
  candidate pixel each found joint came from.
  """

  keypoints: np.ndarray
  scores: np.ndarray
  person_scores: np.ndarray
  mean_tags: np.ndarray
  pixels: np.ndarray

  def __len__(self) -> int:
    return len(self.person_scores)


def empty_people(num_keypoints: int, tag_dims: int = 1) -> People:
  return People(np.zeros((0, num_keypoints, 2), np.float32),
                np.zeros((0, num_keypoints), np.float32),
                np.zeros((0,), np.float32),
                np.zeros((0, tag_dims), np.float32),
                np.zeros((0, num_keypoints, 2), np.int32))


def match_by_tag(x, y, value, tags, order, detection_threshold: float,
                 tag_threshold: float, max_people: int):
  """Groups one image's candidates into people.

  Args:
    x, y: (K, N) int candidate pixels; value: (K, N) heatmap values after
      NMS; tags: (K, N, L) their tags.
    order: the joints in the order they are grouped.

  Returns:
    (members (P, K) int, the candidate index of each person's joint or -1,
     tag_sums (P, L)), people in the order they were started.
  """
  k, _ = value.shape
  members = np.full((0, k), -1, np.int64)
  tag_sums = np.zeros((0, tags.shape[-1]))
  counts = np.zeros((0,))
  for joint in order:
    keep = np.flatnonzero(value[joint] > detection_threshold)
    if not len(keep):
      continue
    joint_tags = tags[joint, keep]
    if not len(members):
      new = keep
    else:
      grouped = min(len(members), max_people)
      means = tag_sums[:grouped] / counts[:grouped, None]
      distance = np.linalg.norm(joint_tags[:, None] - means[None], axis=-1)
      cost = np.round(distance) * 100 - value[joint, keep][:, None]
      added = len(keep)
      if added > grouped:
        cost = np.concatenate([cost, np.full((added, added - grouped), 1e10)], 1)
      rows, cols = optimize.linear_sum_assignment(cost)
      joined = (cols < grouped) & (distance[rows, np.minimum(cols, grouped - 1)]
                                   < tag_threshold)
      members[cols[joined], joint] = keep[rows[joined]]
      tag_sums[cols[joined]] += joint_tags[rows[joined]]
      counts[cols[joined]] += 1
      # The padded assignment pairs every candidate; those it pairs with no
      # person (or too far from one) start people, in candidate order.
      new = keep[rows[~joined]]
    started = np.full((len(new), k), -1, np.int64)
    started[:, joint] = new
    members = np.concatenate([members, started])
    tag_sums = np.concatenate([tag_sums, tags[joint, new]])
    counts = np.concatenate([counts, np.ones(len(new))])
  return members, tag_sums / np.maximum(counts, 1)[:, None]


def quarter_step(neighbours: np.ndarray) -> np.ndarray:
  """(..., 2) +-0.25 steps from (..., 4) values at (x+1, y), (x-1, y),
  (x, y+1), (x, y-1): toward the higher neighbour, away on a tie."""
  dx = np.where(neighbours[..., 0] > neighbours[..., 1], 0.25, -0.25)
  dy = np.where(neighbours[..., 2] > neighbours[..., 3], 0.25, -0.25)
  return np.stack([dx, dy], -1)


def group(candidates, order, detection_threshold: float, tag_threshold: float,
          max_people: int, adjust: bool = True) -> People:
  """People of one image from its candidates (`AssociativeEmbeddingCodec.decode`).

  `candidates` holds numpy (K, N) 'x', 'y', 'value', (K, N, L) 'tags' and
  (K, N, 4) 'neighbours'. The refinement of missing joints is a second
  device step (`AssociativeEmbeddingCodec.refine`).
  """
  x, y, value = candidates['x'], candidates['y'], candidates['value']
  tags, neighbours = candidates['tags'], candidates['neighbours']
  k = value.shape[0]
  members, mean_tags = match_by_tag(x, y, value, tags, order,
                                    detection_threshold, tag_threshold,
                                    max_people)
  if not len(members):
    return empty_people(k, tags.shape[-1])
  found = members >= 0
  index = np.where(found, members, 0)
  joints = np.arange(k)[None]
  pixels = np.stack([x[joints, index], y[joints, index]], -1) * found[..., None]
  scores = np.where(found, value[joints, index], 0.0).astype(np.float32)
  keypoints = pixels.astype(np.float32)
  # The official adjust step moves only joints with a positive value.
  if adjust:
    step = quarter_step(neighbours[joints, index])
    keypoints = keypoints + np.where((found & (scores > 0))[..., None], step, 0.0)
  keypoints = np.where(found[..., None], keypoints, 0.0).astype(np.float32)
  return People(keypoints, scores, scores.mean(-1).astype(np.float32),
                mean_tags.astype(np.float32), pixels.astype(np.int32))


def missing_joints(people: People) -> np.ndarray:
  """(M, 2) the (person, joint) pairs the refinement searches: joints not
  found (score 0), as the official code fills them."""
  return np.argwhere(people.scores == 0)


def fill_missing(people: People, pairs: np.ndarray, refined) -> People:
  """`people` with the joints of `pairs` (`missing_joints`) taken from the
  refinement's search where its value is positive (`refined`: numpy (M,)
  'x', 'y', 'value' and (M, 4) 'neighbours' of
  `AssociativeEmbeddingCodec.refine`)."""
  if not len(pairs):
    return people
  keypoints, scores = people.keypoints.copy(), people.scores.copy()
  taken = refined['value'] > 0
  p, k = pairs[taken, 0], pairs[taken, 1]
  xy = np.stack([refined['x'], refined['y']], -1).astype(np.float32)
  xy = xy + quarter_step(refined['neighbours'])
  keypoints[p, k] = xy[taken]
  scores[p, k] = refined['value'][taken]
  return dataclasses.replace(people, keypoints=keypoints, scores=scores)


def people_boxes(keypoints: np.ndarray, scores: np.ndarray) -> np.ndarray:
  """(N, 4) x, y, w, h around each person's found keypoints (scores > 0)."""
  found = scores > 0
  big = np.float32(1e9)
  lo = np.where(found[..., None], keypoints, big).min(1)
  hi = np.where(found[..., None], keypoints, -big).max(1)
  box = np.concatenate([lo, hi - lo], -1)
  return np.where(found.any(1)[:, None], box, 0.0).astype(np.float32)
