"""The `official` variant reproduces the official HRNet inference exactly.

`_official_*` below transcribe, in numpy and OpenCV, the post-processing of
deep-high-resolution-net.pytorch (lib/core/inference.py `get_max_preds`,
`get_final_preds`; lib/utils/transforms.py `flip_back`,
`get_affine_transform`, `transform_preds`; lib/dataset/coco.py `clean_bbox`
and `_xywh2cs`; lib/core/function.py's flip test with SHIFT_HEATMAP). posejax's
path (`config_lib.official_inference`: crop, grid, refine, flip shift) must
give the same image-space keypoints on hand-built heatmaps.
"""

import math

import cv2
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from posejax import codecs
from posejax import config_lib
from posejax import geometry
from posejax import keypoints as keypoints_lib

INPUT = (256, 192)  # (height, width)
HEATMAP = (64, 48)
SPEC = keypoints_lib.COCO


# ------------------------------------------------ the official code, in numpy

def _official_box(x, y, w, h, width, height):
  x1, y1 = max(0, x), max(0, y)
  x2 = min(width - 1, x1 + max(0, w - 1))
  y2 = min(height - 1, y1 + max(0, h - 1))
  return [x1, y1, x2 - x1, y2 - y1]


def _official_center_scale(x, y, w, h, aspect_ratio=INPUT[1] / INPUT[0]):
  center = np.array([x + w * 0.5, y + h * 0.5], np.float32)
  if w > aspect_ratio * h:
    h = w / aspect_ratio
  elif w < aspect_ratio * h:
    w = h * aspect_ratio
  scale = np.array([w / 200.0, h / 200.0], np.float32) * 1.25
  return center, scale


def _official_affine(center, scale, output_size, inv=False):
  """get_affine_transform with rotation 0 and no shift; output_size (w, h)."""
  src_w = scale[0] * 200.0
  dst_w, dst_h = output_size
  src = np.zeros((3, 2), np.float32)
  dst = np.zeros((3, 2), np.float32)
  src[0] = center
  src[1] = center + np.array([0, src_w * -0.5], np.float32)
  dst[0] = [dst_w * 0.5, dst_h * 0.5]
  dst[1] = np.array([dst_w * 0.5, dst_h * 0.5]) + np.array([0, dst_w * -0.5])
  for points in (src, dst):
    direct = points[0] - points[1]
    points[2] = points[1] + np.array([-direct[1], direct[0]], np.float32)
  if inv:
    return cv2.getAffineTransform(np.float32(dst), np.float32(src))
  return cv2.getAffineTransform(np.float32(src), np.float32(dst))


def _official_flip_back(output_flipped, pairs):
  output_flipped = output_flipped[:, :, :, ::-1].copy()
  for a, b in pairs:
    tmp = output_flipped[:, a].copy()
    output_flipped[:, a] = output_flipped[:, b]
    output_flipped[:, b] = tmp
  return output_flipped


def _official_final_preds(heatmaps, centers, scales):
  """get_max_preds + get_final_preds (POST_PROCESS) on (N, K, H, W) maps."""
  n, k, height, width = heatmaps.shape
  flat = heatmaps.reshape(n, k, -1)
  index = np.argmax(flat, 2)[..., None]
  maxvals = np.amax(flat, 2)[..., None]
  coords = np.tile(index, (1, 1, 2)).astype(np.float32)
  coords[:, :, 0] = coords[:, :, 0] % width
  coords[:, :, 1] = np.floor(coords[:, :, 1] / width)
  coords *= np.tile(np.greater(maxvals, 0.0), (1, 1, 2)).astype(np.float32)
  for i in range(n):
    for j in range(k):
      hm = heatmaps[i][j]
      px = int(math.floor(coords[i][j][0] + 0.5))
      py = int(math.floor(coords[i][j][1] + 0.5))
      if 1 < px < width - 1 and 1 < py < height - 1:
        diff = np.array([hm[py][px + 1] - hm[py][px - 1],
                         hm[py + 1][px] - hm[py - 1][px]])
        coords[i][j] += np.sign(diff) * .25
  preds = np.zeros_like(coords, np.float64)
  for i in range(n):
    trans = _official_affine(centers[i], scales[i], (width, height), inv=True)
    for j in range(k):
      preds[i, j] = trans @ np.array([coords[i, j, 0], coords[i, j, 1], 1.0])
  return preds, maxvals[..., 0]


def _official_predictions(output, output_flipped, centers, scales):
  if output_flipped is not None:
    back = _official_flip_back(output_flipped, SPEC.flip_pairs)
    back[:, :, :, 1:] = back.copy()[:, :, :, 0:-1]  # TEST.SHIFT_HEATMAP
    output = (output + back) * 0.5
  return _official_final_preds(output, centers, scales)


# ---------------------------------------------------------- posejax's path

def _official_config():
  config = config_lib.base_config()
  config.input.size = INPUT
  return config_lib.official_inference(config)


def _posejax_predictions(output, output_flipped, centers, scales):
  config = _official_config()
  codec = codecs.codec_from_config(config, 17)
  heatmaps = jnp.asarray(output.transpose(0, 2, 3, 1))
  if output_flipped is not None:
    heatmaps = codec.merge_flipped(
        heatmaps, jnp.asarray(output_flipped.transpose(0, 2, 3, 1)),
        SPEC.flip_index)
  keypoints, scores = codec.decode(heatmaps)
  # posejax's scale is the crop size in pixels, the official one in 200s.
  image = geometry.input_to_image(np.asarray(keypoints), centers, scales * 200.0,
                                  INPUT, config.input.crop)
  return image, np.asarray(scores)


def _heatmaps(rng, n):
  """Gaussian peaks, a few on row/column 1 and 0, one all-negative map."""
  ys, xs = np.mgrid[:HEATMAP[0], :HEATMAP[1]]
  maps = np.zeros((n, SPEC.num_keypoints, *HEATMAP), np.float32)
  for i in range(n):
    for j in range(SPEC.num_keypoints):
      cx = rng.uniform(2, HEATMAP[1] - 3)
      cy = rng.uniform(2, HEATMAP[0] - 3)
      if j == 1:
        cx = 1.3  # column 1: official code does not refine, posejax's would
      if j == 2:
        cy = 1.2
      if j == 3:
        cx, cy = 0.0, rng.uniform(2, 40)
      maps[i, j] = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * 2.0**2))
      maps[i, j] += rng.normal(0, 0.01, HEATMAP)  # ties are not the point
  maps[:, 4] = -np.abs(maps[:, 4]) - 0.1  # nothing positive: joint at (0, 0)
  return maps


@pytest.mark.parametrize('flip', [False, True])
def test_official_variant_matches_the_official_post_processing(flip):
  rng = np.random.default_rng(0)
  n = 3
  output = _heatmaps(rng, n)
  output_flipped = _heatmaps(rng, n) if flip else None
  boxes = [(-5.0, 20.0, 80.0, 150.0), (100.5, 30.25, 60.0, 40.0),
           (10.0, 10.0, 300.0, 290.0)]
  centers, scales = zip(*(_official_center_scale(*_official_box(*b, 320, 240))
                          for b in boxes))
  centers, scales = np.stack(centers), np.stack(scales)
  expected, expected_scores = _official_predictions(output, output_flipped,
                                                    centers, scales)
  got, scores = _posejax_predictions(output, output_flipped, centers, scales)
  np.testing.assert_allclose(got, expected, atol=1e-3)
  np.testing.assert_allclose(scores, expected_scores, atol=1e-6)
  # The cases the two conventions differ on are in the data: posejax's own
  # decoding moves them.
  own = codecs.HeatmapCodec(INPUT, 4, 2.0, refine='quarter', grid='official')
  own_keypoints, _ = own.decode(jnp.asarray(output.transpose(0, 2, 3, 1)))
  official_keypoints, _ = codecs.codec_from_config(_official_config(), 17).decode(
      jnp.asarray(output.transpose(0, 2, 3, 1)))
  moved = np.abs(np.asarray(own_keypoints) - np.asarray(official_keypoints)).max(-1) > 0
  assert moved[:, 1].all() and moved[:, 2].all() and moved[:, 4].all()
  np.testing.assert_array_equal(np.asarray(official_keypoints)[:, 4], 0.0)


def test_official_crop_is_get_affine_transform():
  box = _official_box(-5.0, 20.0, 80.0, 150.0, 320, 240)
  center, scale = _official_center_scale(*box)
  ours_center, ours_scale = geometry.box_to_center_scale(
      geometry.clip_box_official(np.float32([-5.0, 20.0, 80.0, 150.0]), 320, 240),
      INPUT[1] / INPUT[0], 1.25)
  np.testing.assert_allclose(ours_center, center, rtol=1e-6)
  np.testing.assert_allclose(ours_scale, scale * 200.0, rtol=1e-6)
  matrix = geometry.crop_matrix(ours_center, ours_scale, np.float32(0.0), INPUT,
                                crop='official')
  np.testing.assert_allclose(matrix[:2], _official_affine(center, scale, INPUT[::-1]),
                             atol=1e-4)
  # posejax's own crop is half an input pixel from it.
  own = geometry.crop_matrix(ours_center, ours_scale, np.float32(0.0), INPUT)
  np.testing.assert_allclose(matrix[:2, 2] - own[:2, 2], [0.5, 0.5], atol=1e-5)


def test_pipeline_makes_the_official_crop_of_a_clipped_box():
  import tensorflow as tf
  from posejax.data.pipeline import top_down
  config = _official_config()
  image = np.random.default_rng(0).integers(0, 255, (240, 320, 3), np.uint8)
  bbox = np.float32([-5.0, 20.0, 80.0, 150.0])
  instance = {
      'image': tf.constant(image), 'image_id': tf.constant(1, tf.int64),
      'id': tf.constant(7, tf.int64), 'bbox': tf.constant(bbox),
      'keypoints': tf.zeros((17, 2)), 'visibility': tf.zeros((17,), tf.int32)}
  example = top_down._make_example(instance, tf.constant([0, 0], tf.int64), config,
                                   SPEC, train=False)
  center, scale = _official_center_scale(*_official_box(*bbox, 320, 240))
  np.testing.assert_allclose(example['center'].numpy(), center, rtol=1e-6)
  np.testing.assert_allclose(example['scale'].numpy(), scale * 200.0, rtol=1e-6)
  # The crop is cv2.warpAffine's with the official matrix.
  expected = cv2.warpAffine(image, _official_affine(center, scale, INPUT[::-1]),
                            INPUT[::-1], flags=cv2.INTER_LINEAR)
  inner = (slice(2, -2), slice(2, -2))  # borders: the two fill rules differ
  diff = np.abs(example['image'].numpy()[inner].astype(int) - expected[inner])
  assert diff.max() <= 1, diff.max()
  # A detection box is used as the detector gave it.
  detection = dict(instance, box_score=tf.constant(0.9))
  example = top_down._make_example(detection, tf.constant([0, 0], tf.int64), config,
                                   SPEC, train=False)
  center, _ = _official_center_scale(*bbox)
  np.testing.assert_allclose(example['center'].numpy(), center, rtol=1e-6)


def test_official_variant_sets_every_convention():
  from recipe_configs import load_config
  for name, variant in (('hrnet_coco', 'w48,official'),
                        ('simple_baseline_coco', 'r101,official')):
    config = load_config(name, variant)
    assert (config.input.crop, config.codec.grid, config.codec.refine,
            config.eval.flip_shift) == ('official', 'official', 'official', True)
  default = load_config('hrnet_coco')
  assert (default.input.crop, default.codec.grid, default.codec.refine,
          default.eval.flip_shift) == ('centred', 'centred', 'quarter', False)
  with pytest.raises(ValueError, match='input.crop'):
    config_lib.validate(ml_collections.ConfigDict(dict(
        load_config('hrnet_coco').to_dict(), input=dict(
            load_config('hrnet_coco').input.to_dict(), crop='middle'))))
