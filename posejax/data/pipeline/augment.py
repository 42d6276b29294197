"""Crop geometry and training augmentation, in TensorFlow ops (host CPU).

The crop itself is posejax/geometry.py's (shared with prediction); here it
is built with TensorFlow ops inside tf.data and applied to points. Training
draws half-body, scale, rotation and flip per instance from a stateless seed
(`augment`); `crop_geometry` turns a box into the crop's matrix and moves
the keypoints with it.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from posejax import geometry


def box_to_center_scale(bbox, aspect_ratio: float, padding: float):
  return geometry.box_to_center_scale(tf.cast(bbox, tf.float32), aspect_ratio,
                                      padding, xp=tf)


def crop_matrix(center, scale, rotation_deg, output_size, flip=False,
                crop: str = 'centred'):
  return geometry.crop_matrix(
      tf.cast(center, tf.float32), tf.cast(scale, tf.float32),
      tf.cast(rotation_deg, tf.float32), output_size, tf.cast(flip, tf.bool),
      xp=tf, crop=crop)


def transform_points(points, matrix):
  """(K, 2) points through a 3x3 affine matrix."""
  return tf.linalg.matmul(points, matrix[:2, :2], transpose_b=True) + matrix[:2, 2]


def half_body_box(keypoints, visibility, spec, aspect_ratio, upper_first):
  """Box around the visible upper or lower body joints, or None-equivalent.

  Returns (ok, center, scale); ok is False when fewer than two joints of the
  chosen half are visible. Follows HRNet's half_body_transform: the centre is
  the mean of the chosen joints, the box their extent, enlarged 1.5x.
  """
  k = spec.num_keypoints
  upper = tf.constant(np.isin(np.arange(k), spec.upper_body_ids))
  visible = visibility > 0
  n_upper = tf.reduce_sum(tf.cast(visible & upper, tf.int32))
  use_upper = (upper_first & (n_upper > 2)) | (
      tf.reduce_sum(tf.cast(visible & ~upper, tf.int32)) <= 2)
  chosen = visible & tf.where(use_upper, upper, ~upper)
  n = tf.reduce_sum(tf.cast(chosen, tf.float32))
  mask = tf.cast(chosen, tf.float32)[:, None]
  center = tf.reduce_sum(keypoints * mask, 0) / tf.maximum(n, 1.0)
  big = 1e9
  lo = tf.reduce_min(tf.where(chosen[:, None], keypoints, big), 0)
  hi = tf.reduce_max(tf.where(chosen[:, None], keypoints, -big), 0)
  scale = geometry.fix_aspect(hi[0] - lo[0], hi[1] - lo[1], aspect_ratio, xp=tf)
  ok = (n >= 2) & tf.reduce_all(scale > 0)
  return ok, center, scale * 1.5


def augment(keypoints, visibility, seed, input_config, spec, aspect_ratio, center,
             scale):
  """Random half-body, scale, rotation and flip for one training instance."""
  seeds = tf.random.experimental.stateless_split(seed, num=7)
  uniform = lambda i: tf.random.stateless_uniform([], seeds[i])
  normal = lambda i: tf.random.stateless_normal([], seeds[i])

  num_visible = tf.reduce_sum(tf.cast(visibility > 0, tf.int32))
  try_half = (uniform(0) < input_config.half_body_prob) & (
      num_visible > input_config.half_body_min_keypoints)
  ok, hb_center, hb_scale = half_body_box(
      keypoints, visibility, spec, aspect_ratio, uniform(1) < 0.5)
  use_half = try_half & ok
  center = tf.where(use_half, hb_center, center)
  scale = tf.where(use_half, hb_scale, scale)

  sf, rf = input_config.scale_factor, input_config.rotation_factor
  scale = scale * tf.clip_by_value(normal(2) * sf + 1.0, 1.0 - sf, 1.0 + sf)
  rotation = tf.where(uniform(3) < input_config.rotation_prob,
                      tf.clip_by_value(normal(4) * rf, -2.0 * rf, 2.0 * rf), 0.0)
  flip = (uniform(5) < 0.5) if input_config.flip else tf.constant(False)
  return center, scale, rotation, flip


def crop_geometry(bbox, keypoints, visibility, seed, *, config, spec, train: bool):
  """An instance's crop: centre, scale (augmented in training), the matrix
  from image to input pixels, and the keypoints and visibility in the crop
  (mirrored with the image when the crop is flipped)."""
  input_size = tuple(config.input.size)
  aspect_ratio = input_size[1] / input_size[0]
  center, scale = box_to_center_scale(bbox, aspect_ratio, config.input.padding)
  if train:
    center, scale, rotation, flip = augment(
        keypoints, visibility, seed, config.input, spec, aspect_ratio, center, scale)
  else:
    rotation, flip = tf.constant(0.0), tf.constant(False)
  matrix = crop_matrix(center, scale, rotation, input_size, flip,
                       config.input.crop)
  keypoints = transform_points(keypoints, matrix)
  flip_index = tf.constant(spec.flip_index)
  keypoints = tf.where(flip, tf.gather(keypoints, flip_index), keypoints)
  visibility = tf.where(flip, tf.gather(visibility, flip_index), visibility)
  return center, scale, matrix, keypoints, visibility
