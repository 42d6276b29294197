"""The OpenPose port's post-processing, transcribed: the reference for PAF grouping.

Hzzone/pytorch-openpose `src/body.py` (`Body.__call__` after the network):
peaks of the Gaussian-smoothed confidence maps, the line integral over the
PAF of every candidate limb, greedy matching and assembly into people,
with the port's constants and loops (thre1 0.1, thre2 0.05, mid_num 10,
the length prior with the image's height, people of at least 4 parts and
0.4 mean score). It takes the maps where the port has them after resizing,
at the image's resolution: heatmaps (H, W, 19) and PAFs (H, W, 38), in the
CMU channel order. `scene` renders test maps of several people.

Used by tests/test_assembly.py and benchmarks/grouping_speed.py (--codec=part_affinity).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import gaussian_filter

LIMB_SEQ = [[2, 3], [2, 6], [3, 4], [4, 5], [6, 7], [7, 8], [2, 9], [9, 10],
            [10, 11], [2, 12], [12, 13], [13, 14], [2, 1], [1, 15], [15, 17],
            [1, 16], [16, 18], [3, 17], [6, 18]]
MAP_IDX = [[31, 32], [39, 40], [33, 34], [35, 36], [41, 42], [43, 44], [19, 20],
           [21, 22], [23, 24], [25, 26], [27, 28], [29, 30], [47, 48], [49, 50],
           [53, 54], [51, 52], [55, 56], [37, 38], [45, 46]]


def parse(heatmap_avg, paf_avg):
  """(candidate (M, 4): x, y, score, id; subset (P, 20): 18 candidate ids or
  -1, total score, part count), as the port returns them, and its peaks
  per part (18 lists of (x, y, score, id))."""
  thre1, thre2, mid_num = 0.1, 0.05, 10
  height = heatmap_avg.shape[0]
  all_peaks, peak_counter = [], 0
  for part in range(18):
    map_ori = heatmap_avg[:, :, part]
    one = gaussian_filter(map_ori, sigma=3)
    left = np.zeros(one.shape)
    left[1:, :] = one[:-1, :]
    right = np.zeros(one.shape)
    right[:-1, :] = one[1:, :]
    up = np.zeros(one.shape)
    up[:, 1:] = one[:, :-1]
    down = np.zeros(one.shape)
    down[:, :-1] = one[:, 1:]
    binary = np.logical_and.reduce(
        (one >= left, one >= right, one >= up, one >= down, one > thre1))
    ys, xs = np.nonzero(binary)
    peaks = [(int(x), int(y), map_ori[y, x], peak_counter + i)
             for i, (x, y) in enumerate(zip(xs, ys))]
    all_peaks.append(peaks)
    peak_counter += len(peaks)

  connection_all, special_k = [], []
  for k in range(len(MAP_IDX)):
    score_mid = paf_avg[:, :, [x - 19 for x in MAP_IDX[k]]]
    cand_a = all_peaks[LIMB_SEQ[k][0] - 1]
    cand_b = all_peaks[LIMB_SEQ[k][1] - 1]
    n_a, n_b = len(cand_a), len(cand_b)
    if n_a == 0 or n_b == 0:
      special_k.append(k)
      connection_all.append([])
      continue
    connection_candidate = []
    for i in range(n_a):
      for j in range(n_b):
        vec = np.subtract(cand_b[j][:2], cand_a[i][:2])
        norm = math.sqrt(vec[0] * vec[0] + vec[1] * vec[1])
        norm = max(0.001, norm)
        vec = np.divide(vec, norm)
        startend = list(zip(np.linspace(cand_a[i][0], cand_b[j][0], num=mid_num),
                            np.linspace(cand_a[i][1], cand_b[j][1], num=mid_num)))
        vec_x = np.array([score_mid[int(round(p[1])), int(round(p[0])), 0]
                          for p in startend])
        vec_y = np.array([score_mid[int(round(p[1])), int(round(p[0])), 1]
                          for p in startend])
        score_midpts = np.multiply(vec_x, vec[0]) + np.multiply(vec_y, vec[1])
        score_with_dist_prior = (sum(score_midpts) / len(score_midpts)
                                 + min(0.5 * height / norm - 1, 0))
        criterion1 = len(np.nonzero(score_midpts > thre2)[0]) > 0.8 * len(score_midpts)
        criterion2 = score_with_dist_prior > 0
        if criterion1 and criterion2:
          connection_candidate.append(
              [i, j, score_with_dist_prior,
               score_with_dist_prior + cand_a[i][2] + cand_b[j][2]])
    connection_candidate = sorted(connection_candidate, key=lambda x: x[2],
                                  reverse=True)
    connection = np.zeros((0, 5))
    for c in connection_candidate:
      i, j, s = c[0:3]
      if i not in connection[:, 3] and j not in connection[:, 4]:
        connection = np.vstack([connection, [cand_a[i][3], cand_b[j][3], s, i, j]])
        if len(connection) >= min(n_a, n_b):
          break
    connection_all.append(connection)

  subset = -1 * np.ones((0, 20))
  candidate = np.array([item for sublist in all_peaks for item in sublist])
  for k in range(len(MAP_IDX)):
    if k in special_k:
      continue
    part_as = connection_all[k][:, 0]
    part_bs = connection_all[k][:, 1]
    index_a, index_b = np.array(LIMB_SEQ[k]) - 1
    for i in range(len(connection_all[k])):
      found = 0
      subset_idx = [-1, -1]
      for j in range(len(subset)):
        if subset[j][index_a] == part_as[i] or subset[j][index_b] == part_bs[i]:
          subset_idx[found] = j
          found += 1
      if found == 1:
        j = subset_idx[0]
        if subset[j][index_b] != part_bs[i]:
          subset[j][index_b] = part_bs[i]
          subset[j][-1] += 1
          subset[j][-2] += candidate[part_bs[i].astype(int), 2] + connection_all[k][i][2]
      elif found == 2:
        j1, j2 = subset_idx
        membership = ((subset[j1] >= 0).astype(int) + (subset[j2] >= 0).astype(int))[:-2]
        if len(np.nonzero(membership == 2)[0]) == 0:
          subset[j1][:-2] += (subset[j2][:-2] + 1)
          subset[j1][-2:] += subset[j2][-2:]
          subset[j1][-2] += connection_all[k][i][2]
          subset = np.delete(subset, j2, 0)
        else:
          subset[j1][index_b] = part_bs[i]
          subset[j1][-1] += 1
          subset[j1][-2] += candidate[part_bs[i].astype(int), 2] + connection_all[k][i][2]
      elif not found and k < 17:
        row = -1 * np.ones(20)
        row[index_a] = part_as[i]
        row[index_b] = part_bs[i]
        row[-1] = 2
        row[-2] = sum(candidate[connection_all[k][i, :2].astype(int), 2]) + connection_all[k][i][2]
        subset = np.vstack([subset, row])
  delete = [i for i in range(len(subset))
            if subset[i][-1] < 4 or subset[i][-2] / subset[i][-1] < 0.4]
  subset = np.delete(subset, delete, axis=0)
  return candidate, subset, all_peaks


def people_parts(candidate, subset):
  """(P, 18, 2) each person's part pixels, -1 where missing."""
  out = -np.ones((len(subset), 18, 2))
  for p, row in enumerate(subset):
    for part in range(18):
      if row[part] >= 0:
        out[p, part] = candidate[int(row[part]), :2]
  return out


# A standing person in OpenPose's COCO-18 order, in units of its height.
FIGURE = np.array([
    [0.0, -0.45], [0.0, -0.3], [-0.14, -0.31], [-0.2, -0.13], [-0.22, 0.03],
    [0.14, -0.31], [0.2, -0.13], [0.22, 0.03], [-0.09, 0.02], [-0.1, 0.25],
    [-0.1, 0.48], [0.09, 0.02], [0.1, 0.25], [0.1, 0.48], [-0.04, -0.48],
    [0.04, -0.48], [-0.08, -0.46], [0.08, -0.46]])


def scene(seed, size=(368, 368), people=4, noise=0.02, distractors=3):
  """(heatmaps (H, W, 19), PAFs (H, W, 38), parts (P, 18, 2), visible
  (P, 18)) float32 maps of `people` figures 0.25-0.55 of the height tall
  (90-200 px at 368) at random places
  (some overlapping), each part hidden with probability 0.1, a few lone
  part peaks (distractors), rendered as CMU targets at the image's
  resolution (Gaussians of 7 px, PAFs 8 px wide each side), plus noise."""
  rng = np.random.default_rng(seed)
  h, w = size
  height = rng.uniform(0.25 * h, 0.55 * h, (people, 1, 1))
  angle = rng.uniform(-0.3, 0.3, (people, 1))
  c, s = np.cos(angle), np.sin(angle)
  x, y = FIGURE[None, :, 0] * height[..., 0], FIGURE[None, :, 1] * height[..., 0]
  rotated = np.stack([c * x - s * y, s * x + c * y], -1)
  centre = np.stack([rng.uniform(0.15 * w, 0.85 * w, people),
                     rng.uniform(0.3 * h, 0.7 * h, people)], -1)
  parts = rotated + centre[:, None] + rng.normal(0, 3, (people, 18, 2))
  visible = rng.random((people, 18)) > 0.1
  visible &= (parts[..., 0] >= 0) & (parts[..., 0] <= w - 1)
  visible &= (parts[..., 1] >= 0) & (parts[..., 1] <= h - 1)
  gx, gy = np.meshgrid(np.arange(w), np.arange(h))
  heat = np.zeros((h, w, 19))
  for p in range(people):
    for part in range(18):
      if visible[p, part]:
        g = np.exp(-((gx - parts[p, part, 0]) ** 2 + (gy - parts[p, part, 1]) ** 2)
                   / (2 * 7.0**2))
        heat[..., part] = np.maximum(heat[..., part], g)
  for _ in range(distractors):
    part = rng.integers(18)
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    heat[..., part] = np.maximum(
        heat[..., part], 0.6 * np.exp(-((gx - cx) ** 2 + (gy - cy) ** 2) / (2 * 7.0**2)))
  heat[..., 18] = 1 - heat[..., :18].max(-1)
  paf = np.zeros((h, w, 38))
  for k, (a, b) in enumerate(LIMB_SEQ):
    a, b = a - 1, b - 1
    channels = [m - 19 for m in MAP_IDX[k]]
    total, count = np.zeros((h, w, 2)), np.zeros((h, w))
    for p in range(people):
      if not (visible[p, a] and visible[p, b]):
        continue
      v = parts[p, b] - parts[p, a]
      length = np.linalg.norm(v)
      u = v / max(length, 1e-6)
      dx, dy = gx - parts[p, a, 0], gy - parts[p, a, 1]
      along = dx * u[0] + dy * u[1]
      across = np.abs(dx * u[1] - dy * u[0])
      inside = (along >= 0) & (along <= length) & (across <= 8.0)
      total[inside] += u
      count[inside] += 1
    paf[..., channels] = total / np.maximum(count, 1)[..., None]
  heat += rng.normal(0, noise, heat.shape)
  paf += rng.normal(0, noise, paf.shape)
  return heat.astype(np.float32), paf.astype(np.float32), parts, visible
