"""A transcription of the official HigherHRNet grouping, for comparison.

HRNet/HigherHRNet-Human-Pose-Estimation, lib/core/group.py (`match_by_tag`,
`HeatmapParser.nms/top_k/adjust/refine/parse`), kept in its shape: torch
for the NMS and top-k, Python loops and dicts for the matching and the
adjustment, numpy over whole maps for the refinement. Two changes: the
assignment is scipy's `linear_sum_assignment` where the original calls the
`munkres` package (pure Python, slower still: the speed comparison in
benchmarks/grouping_speed.py is therefore on the reference's side), and the
half pixel the original adds to every position is left out so that
positions compare with posejax's (pixel centres at integers).

Maps are (K, H, W) numpy, tags (K, H, W, L), one image; only tests and the
benchmark import this.
"""

import numpy as np
from scipy import optimize
import torch

JOINT_ORDER = [i - 1 for i in [1, 2, 3, 4, 5, 6, 7, 12, 13, 8, 9, 10, 11, 14,
                               15, 16, 17]]


class Params:
  num_joints = 17
  max_num_people = 30
  detection_threshold = 0.1
  tag_threshold = 1.0
  use_detection_val = True
  ignore_too_much = False
  joint_order = JOINT_ORDER
  nms_kernel = 5
  nms_padding = 2


def py_max_match(scores):
  rows, cols = optimize.linear_sum_assignment(scores)
  return np.stack([rows, cols], 1).astype(np.int32)


def match_by_tag(inp, params):
  tag_k, loc_k, val_k = inp
  default_ = np.zeros((params.num_joints, 3 + tag_k.shape[2]))
  joint_dict = {}
  tag_dict = {}
  for i in range(params.num_joints):
    idx = params.joint_order[i]
    tags = tag_k[idx]
    joints = np.concatenate((loc_k[idx], val_k[idx, :, None], tags), 1)
    mask = joints[:, 2] > params.detection_threshold
    tags = tags[mask]
    joints = joints[mask]
    if joints.shape[0] == 0:
      continue
    if i == 0 or len(joint_dict) == 0:
      for tag, joint in zip(tags, joints):
        key = tag[0]
        joint_dict.setdefault(key, np.copy(default_))[idx] = joint
        tag_dict[key] = [tag]
    else:
      grouped_keys = list(joint_dict.keys())[:params.max_num_people]
      grouped_tags = [np.mean(tag_dict[i], axis=0) for i in grouped_keys]
      if params.ignore_too_much and len(grouped_keys) == params.max_num_people:
        continue
      diff = joints[:, None, 3:] - np.array(grouped_tags)[None, :, :]
      diff_normed = np.linalg.norm(diff, ord=2, axis=2)
      diff_saved = np.copy(diff_normed)
      if params.use_detection_val:
        diff_normed = np.round(diff_normed) * 100 - joints[:, 2:3]
      num_added = diff.shape[0]
      num_grouped = diff.shape[1]
      if num_added > num_grouped:
        diff_normed = np.concatenate(
            (diff_normed, np.zeros((num_added, num_added - num_grouped)) + 1e10),
            axis=1)
      pairs = py_max_match(diff_normed)
      for row, col in pairs:
        if (row < num_added and col < num_grouped
            and diff_saved[row][col] < params.tag_threshold):
          key = grouped_keys[col]
          joint_dict[key][idx] = joints[row]
          tag_dict[key].append(tags[row])
        else:
          key = tags[row][0]
          joint_dict.setdefault(key, np.copy(default_))[idx] = joints[row]
          tag_dict[key] = [tags[row]]
  return np.array([joint_dict[i] for i in joint_dict]).astype(np.float32)


class HeatmapParser:

  def __init__(self, params=Params):
    self.params = params
    self.pool = torch.nn.MaxPool2d(params.nms_kernel, 1, params.nms_padding)

  def nms(self, det):
    maxm = self.pool(det)
    maxm = torch.eq(maxm, det).float()
    return det * maxm

  def top_k(self, det, tag):
    det = self.nms(det)
    num_images, num_joints, h, w = det.size()
    det = det.view(num_images, num_joints, -1)
    val_k, ind = det.topk(self.params.max_num_people, dim=2)
    tag = tag.view(tag.size(0), tag.size(1), w * h, -1)
    tag_k = torch.stack(
        [torch.gather(tag[:, :, :, i], 2, ind) for i in range(tag.size(3))], dim=3)
    x = ind % w
    y = torch.div(ind, w, rounding_mode='floor')
    ind_k = torch.stack((x, y), dim=3)
    return {'tag_k': tag_k.numpy(), 'loc_k': ind_k.numpy(), 'val_k': val_k.numpy()}

  def adjust(self, ans, det):
    for batch_id, people in enumerate(ans):
      for people_id, i in enumerate(people):
        for joint_id, joint in enumerate(i):
          if joint[2] > 0:
            y, x = joint[0:2]
            xx, yy = int(x), int(y)
            tmp = det[batch_id][joint_id]
            if tmp[xx, min(yy + 1, tmp.shape[1] - 1)] > tmp[xx, max(yy - 1, 0)]:
              y += 0.25
            else:
              y -= 0.25
            if tmp[min(xx + 1, tmp.shape[0] - 1), yy] > tmp[max(0, xx - 1), yy]:
              x += 0.25
            else:
              x -= 0.25
            ans[batch_id][people_id, joint_id, 0:2] = (y, x)  # original: +0.5
    return ans

  def refine(self, det, tag, keypoints, pixels):
    # `pixels`: the integer positions the original reads as
    # keypoints.astype(int32) after its +0.5 (the candidates' pixels).
    tags = []
    for i in range(keypoints.shape[0]):
      if keypoints[i, 2] > 0:
        x, y = pixels[i]
        tags.append(tag[i, y, x])
    prev_tag = np.mean(tags, axis=0)
    ans = []
    for i in range(keypoints.shape[0]):
      tmp = det[i, :, :]
      tt = (((tag[i, :, :] - prev_tag[None, None, :]) ** 2).sum(axis=2) ** 0.5)
      tmp2 = tmp - np.round(tt)
      y, x = np.unravel_index(np.argmax(tmp2), tmp.shape)
      xx = x
      yy = y
      val = tmp[y, x]
      x = float(x)  # original: x += 0.5
      y = float(y)
      if tmp[yy, min(xx + 1, tmp.shape[1] - 1)] > tmp[yy, max(xx - 1, 0)]:
        x += 0.25
      else:
        x -= 0.25
      if tmp[min(yy + 1, tmp.shape[0] - 1), xx] > tmp[max(0, yy - 1), xx]:
        y += 0.25
      else:
        y -= 0.25
      ans.append((x, y, val))
    ans = np.array(ans)
    for i in range(det.shape[0]):
      if ans[i, 2] > 0 and keypoints[i, 2] == 0:
        keypoints[i, :2] = ans[i, :2]
        keypoints[i, 2] = ans[i, 2]
    return keypoints

  def parse(self, det, tag, adjust=True, refine=True):
    """det (K, H, W), tag (K, H, W, L) numpy -> (people (P, K, 3 + L), scores)."""
    det_t = torch.from_numpy(np.ascontiguousarray(det))[None]
    tag_t = torch.from_numpy(np.ascontiguousarray(tag))[None]
    top = self.top_k(det_t, tag_t)
    ans = [match_by_tag((top['tag_k'][0], top['loc_k'][0], top['val_k'][0]),
                        self.params)]
    if not len(ans[0]):
      return np.zeros((0, self.params.num_joints, 3 + tag.shape[-1])), []
    pixels = [a[:, :, :2].astype(np.int64) for a in ans]
    if adjust:
      ans = self.adjust(ans, det[None])
    scores = [i[:, 2].mean() for i in ans[0]]
    if refine:
      ans = ans[0]
      for i in range(len(ans)):
        ans[i] = self.refine(det, tag, ans[i], pixels[0][i])
      ans = [ans]
    return ans[0], scores


def scene(seed, size=(64, 80), people=4, noise=0.05, tag_noise=0.1):
  """(17, H, W) heatmaps and (17, H, W, 1) tags of `people` on noise."""
  rng = np.random.default_rng(seed)
  h, w = size
  ys, xs = np.mgrid[:h, :w]
  det = rng.uniform(0, noise, (17, h, w))
  tag = rng.normal(0, 3.0, (17, h, w, 1))
  for p in range(people):
    person_tag = 3.0 * p + rng.normal(0, 0.3)
    centre = rng.uniform([8, 8], [w - 9, h - 9])
    for k in range(17):
      if rng.uniform() < 0.15:  # not visible: refinement's case
        continue
      x, y = np.clip(centre + rng.normal(0, 6, 2), 1, [w - 2, h - 2])
      g = rng.uniform(0.3, 1.0) * np.exp(-((xs - x)**2 + (ys - y)**2) / 8)
      det[k] = np.maximum(det[k], g)
      near = g > 0.05
      tag[k, near, 0] = person_tag + rng.normal(0, tag_noise, near.sum())
  return det.astype(np.float32), tag.astype(np.float32)
