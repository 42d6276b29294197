"""People from part peaks and scored limb candidates (host, numpy).

The combinatorial half of part-affinity-field decoding; the array half
(peaks, the line integral of every candidate limb) runs on device in
posejax/codecs/affinity.py. The steps and constants follow the PyTorch
port of OpenPose (Hzzone/pytorch-openpose `src/body.py`):

  connect   per limb, its candidate pairs by score, highest first, each
            taken unless one of its two peaks is already used by the limb,
            until min(peaks of either part) pairs are taken
  assemble  limb by limb in layout order, each taken pair joins the person
            holding either of its peaks: one such person gets the second
            peak (its count and total score, peak value + pair score, grow);
            two people holding no part in common are merged; otherwise the
            first of them gets the second peak; a pair no one holds starts
            a person, except on the layout's closing limbs
  prune     people with fewer than `min_parts` parts, or a total score
            under `min_mean_score` per part, are dropped

A person's score is the mean over all parts of its peaks' values (0 for the
parts it lacks), as the associative-embedding person score. One difference
from the port: where a pair's peaks are held by three or more people (the
port then fails with an IndexError), the first two are used.
"""

from __future__ import annotations

import numpy as np

from posejax.codecs import grouping


def connect(score: np.ndarray, ok: np.ndarray, count_a: int, count_b: int):
  """(pairs (M, 2) int, their scores (M,)) for one limb from its (N, N)
  pair scores and candidate mask."""
  rows, cols = np.nonzero(ok)  # the port's loop order: row-major
  order = np.argsort(-score[rows, cols], kind='stable')
  used_a, used_b, taken = set(), set(), []
  limit = min(count_a, count_b)
  for c in order:
    i, j = int(rows[c]), int(cols[c])
    if i in used_a or j in used_b:
      continue
    used_a.add(i)
    used_b.add(j)
    taken.append((i, j))
    if len(taken) >= limit:
      break
  pairs = np.asarray(taken, np.int64).reshape(-1, 2)
  return pairs, score[pairs[:, 0], pairs[:, 1]]


def assemble(candidates, limbs, closing_limbs: int, min_parts: int,
             min_mean_score: float) -> grouping.People:
  """The people of one image, in the layout's parts, on the decoding maps.

  `candidates` holds numpy (J, N) 'x', 'y', 'value', 'valid' and (L, N, N)
  'limb_score', 'limb_ok' (`PartAffinityCodec.decode` of one image).
  """
  value, valid = candidates['value'], candidates['valid']
  num_parts = value.shape[0]
  counts = valid.sum(-1)
  members = []  # per person: (J,) peak index per part or -1
  totals, sizes = [], []
  first_opening = len(limbs) - closing_limbs
  for limb, (a, b) in enumerate(limbs):
    if not counts[a] or not counts[b]:
      continue
    pairs, scores = connect(candidates['limb_score'][limb],
                            candidates['limb_ok'][limb], counts[a], counts[b])
    for (i, j), s in zip(pairs, scores):
      holders = [p for p, m in enumerate(members) if m[a] == i or m[b] == j]
      if len(holders) == 1 or (len(holders) >= 2 and np.any(
          (members[holders[0]] >= 0) & (members[holders[1]] >= 0))):
        p = holders[0]
        # One holder: only a new second peak counts; two that share parts:
        # the first takes it regardless, as the port.
        if len(holders) >= 2 or members[p][b] != j:
          members[p][b] = j
          sizes[p] += 1
          totals[p] += value[b, j] + s
      elif len(holders) >= 2:  # disjoint: merge the second into the first
        p, q = holders[:2]
        members[p] = np.where(members[q] >= 0, members[q], members[p])
        sizes[p] += sizes[q]
        totals[p] += totals[q] + s
        del members[q], sizes[q], totals[q]
      elif limb < first_opening:
        row = np.full((num_parts,), -1, np.int64)
        row[a], row[b] = i, j
        members.append(row)
        sizes.append(2)
        totals.append(value[a, i] + value[b, j] + s)
  kept = [p for p in range(len(members))
          if sizes[p] >= min_parts and totals[p] / sizes[p] >= min_mean_score]
  if not kept:
    return grouping.empty_people(num_parts, 0)
  member = np.stack([members[p] for p in kept])  # (P, J)
  found = member >= 0
  index = np.where(found, member, 0)
  parts = np.arange(num_parts)[None]
  pixels = np.stack([candidates['x'][parts, index], candidates['y'][parts, index]],
                    -1) * found[..., None]
  scores = np.where(found, value[parts, index], 0.0).astype(np.float32)
  return grouping.People(pixels.astype(np.float32), scores,
                         scores.mean(-1).astype(np.float32),
                         np.zeros((len(kept), 0), np.float32),
                         pixels.astype(np.int32))
