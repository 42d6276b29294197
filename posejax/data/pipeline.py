"""Top-down tf.data input pipeline (host CPU).

One example per person instance: decode the image, take the instance box,
compute the affine crop (centre/scale, with random scale, rotation, flip and
half-body in training), warp the image with TF ops and move the keypoints with
the same matrix. It emits uint8 images, keypoints in input-pixel coordinates,
visibility and the metadata that maps predictions back to the image. It never
renders heatmaps: that happens on device (`posejax.codecs`).

Determinism: every random draw of an instance comes from a stateless op seeded
by (config.seed, the instance's position in the training stream), and each
epoch is shuffled with a seed derived from the epoch number. A run restarted at
step N therefore sees exactly the data an uninterrupted run sees from step N,
without replaying the augmentation of the steps before it.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from posejax import keypoints as keypoints_lib


# ---------------------------------------------------------------- geometry

def _fix_aspect(w, h, aspect_ratio: float):
  """Grows the short side so that w / h == aspect_ratio."""
  wide = w > aspect_ratio * h
  return tf.stack([tf.where(wide, w, h * aspect_ratio),
                   tf.where(wide, w / aspect_ratio, h)])


def box_to_center_scale(bbox, aspect_ratio: float, padding: float):
  """(x, y, w, h) -> centre (2,) and crop size (2,) in image pixels.

  The crop keeps the network input's aspect ratio (w / h) by growing the short
  side, then is enlarged by `padding` (1.25 in HRNet/SimpleBaselines) so that
  limbs at the box border keep some context.
  """
  bbox = tf.cast(bbox, tf.float32)
  x, y, w, h = tf.unstack(bbox)
  center = tf.stack([x + 0.5 * w, y + 0.5 * h])
  return center, _fix_aspect(w, h, aspect_ratio) * padding


def crop_matrix(center, scale, rotation_deg, output_size, flip=False):
  """3x3 matrix taking image pixels to input pixels (0-based pixel centres).

  The crop of size `scale` centred on `center` fills the output exactly: its
  edges land on the output's pixel edges (-0.5 and W - 0.5). The crop is
  rotated by `rotation_deg` about its centre and, if `flip`, mirrored.
  """
  out_h, out_w = output_size
  center = tf.cast(center, tf.float32)
  scale = tf.cast(scale, tf.float32)
  theta = tf.cast(rotation_deg, tf.float32) * (math.pi / 180.0)
  cos, sin = tf.cos(theta), tf.sin(theta)
  sx = out_w / scale[0]
  sy = out_h / scale[1]
  mirror = tf.where(tf.cast(flip, tf.bool), -1.0, 1.0)
  # x_out = (W-1)/2 + mirror * sx * (cos*dx + sin*dy)
  # y_out = (H-1)/2 +          sy * (-sin*dx + cos*dy),   d = p - center
  a = tf.stack([mirror * sx * cos, mirror * sx * sin])
  b = tf.stack([-sy * sin, sy * cos])
  tx = (out_w - 1) / 2.0 - tf.tensordot(a, center, 1)
  ty = (out_h - 1) / 2.0 - tf.tensordot(b, center, 1)
  return tf.stack([
      tf.concat([a, [tx]], 0),
      tf.concat([b, [ty]], 0),
      tf.constant([0.0, 0.0, 1.0]),
  ])


def warp_image(image, matrix, output_size):
  """Resamples `image` (H, W, 3) so that input pixel p shows image pixel M^-1 p."""
  inverse = tf.linalg.inv(matrix)
  inverse = inverse / inverse[2, 2]
  transform = tf.reshape(inverse, [-1])[:8]
  warped = tf.raw_ops.ImageProjectiveTransformV3(
      images=tf.cast(image, tf.float32)[None],
      transforms=transform[None],
      output_shape=tf.constant(output_size, tf.int32),
      fill_value=0.0,
      interpolation='BILINEAR',
      fill_mode='CONSTANT')[0]
  return tf.cast(tf.clip_by_value(tf.round(warped), 0, 255), tf.uint8)


def transform_points(points, matrix):
  """(K, 2) points through a 3x3 affine matrix."""
  return tf.linalg.matmul(points, matrix[:2, :2], transpose_b=True) + matrix[:2, 2]


# ----------------------------------------------------------- augmentation

def _half_body_box(keypoints, visibility, spec, aspect_ratio, upper_first):
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
  scale = _fix_aspect(hi[0] - lo[0], hi[1] - lo[1], aspect_ratio)
  ok = (n >= 2) & tf.reduce_all(scale > 0)
  return ok, center, scale * 1.5


def _augment(instance, seed, input_config, spec, aspect_ratio, center, scale):
  """Random half-body, scale, rotation and flip for one training instance."""
  seeds = tf.random.experimental.stateless_split(seed, num=7)
  uniform = lambda i: tf.random.stateless_uniform([], seeds[i])
  normal = lambda i: tf.random.stateless_normal([], seeds[i])

  keypoints, visibility = instance['keypoints'], instance['visibility']
  num_visible = tf.reduce_sum(tf.cast(visibility > 0, tf.int32))
  try_half = (uniform(0) < input_config.half_body_prob) & (
      num_visible > input_config.half_body_min_keypoints)
  ok, hb_center, hb_scale = _half_body_box(
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


# --------------------------------------------------------------- examples

def _explode_instances(record):
  """An image record -> a dataset of its person instances (image bytes kept)."""
  objects = record['objects']
  n = tf.shape(objects['id'])[0]
  per_instance = dict(objects)
  per_instance['image'] = tf.fill([n], record['image'])
  per_instance['image_id'] = tf.fill([n], record['image/id'])
  return tf.data.Dataset.from_tensor_slices(per_instance)


def _is_person_instance(instance):
  """Instances that train and that the ground-truth-box evaluation scores.

  Works on one instance or on a record's `objects` (then elementwise).
  """
  bbox = instance['bbox']
  return ((instance['num_keypoints'] > 0) & (instance['iscrowd'] == 0)
          & (bbox[..., 2] > 1) & (bbox[..., 3] > 1))


def _make_example(instance, seed, config, spec, train: bool):
  input_size = tuple(config.input.size)
  aspect_ratio = input_size[1] / input_size[0]
  center, scale = box_to_center_scale(
      instance['bbox'], aspect_ratio, config.input.padding)
  if train:
    center, scale, rotation, flip = _augment(
        instance, seed, config.input, spec, aspect_ratio, center, scale)
  else:
    rotation, flip = tf.constant(0.0), tf.constant(False)
  matrix = crop_matrix(center, scale, rotation, input_size, flip)
  image = tf.io.decode_image(instance['image'], channels=3, expand_animations=False)
  keypoints = transform_points(instance['keypoints'], matrix)
  visibility = instance['visibility']
  flip_index = tf.constant(spec.flip_index)
  keypoints = tf.where(flip, tf.gather(keypoints, flip_index), keypoints)
  visibility = tf.where(flip, tf.gather(visibility, flip_index), visibility)
  return {
      'image': warp_image(image, matrix, input_size),
      'keypoints': keypoints,
      'visibility': visibility,
      'image_id': instance['image_id'],
      'instance_id': instance['id'],
      'bbox': instance['bbox'],
      'center': center,
      'scale': scale,
      'box_score': tf.constant(1.0),
  }


def _records(builder, split: str):
  return builder.as_dataset(
      split=split, shuffle_files=False,
      decoders={'image': tfds.decode.SkipDecoding()},
      read_config=tfds.ReadConfig(try_autocache=False))


def _options():
  options = tf.data.Options()
  options.deterministic = True
  options.autotune.enabled = True
  return options


def count_instances(builder, split: str) -> int:
  """Person instances in a split (reads annotations only, decodes no image)."""
  ds = _records(builder, split).map(
      lambda r: tf.reduce_sum(tf.cast(_is_person_instance(r['objects']), tf.int64)))
  return int(ds.reduce(tf.constant(0, tf.int64), lambda a, b: a + b))


def _process_split(split: str, process_index: int, process_count: int) -> str:
  if process_count == 1:
    return split
  return tfds.even_splits(split, n=process_count, drop_remainder=True)[process_index]


def train_dataset(builder, config, *, start_step: int = 0, process_index: int = 0,
                  process_count: int = 1) -> tf.data.Dataset:
  """Infinite batches of augmented training instances for this host.

  Each host reads its own slice of the split and yields host-local batches of
  `train.global_batch_size // process_count`; batch b of the stream is the one
  the train step `start_step + b` consumes.
  """
  spec = keypoints_lib.get_spec(config.dataset.keypoints)
  local_batch = config.train.global_batch_size // process_count
  split = _process_split(config.dataset.train_split, process_index, process_count)
  num_instances = count_instances(builder, split)
  if num_instances == 0:
    raise ValueError(f'No person instances with keypoints in split {split!r}.')
  instances = _records(builder, split).flat_map(_explode_instances).filter(
      _is_person_instance)

  buffer = min(config.input.shuffle_buffer, num_instances)
  seed = config.seed
  def epoch(e):
    return instances.shuffle(buffer, seed=seed * 1_000_003 + e,
                             reshuffle_each_iteration=False)

  offset = start_step * local_batch
  first_epoch, skip = divmod(offset, num_instances)
  stream = epoch(tf.constant(first_epoch, tf.int64)).skip(skip).concatenate(
      tf.data.Dataset.range(first_epoch + 1, 2**62).flat_map(epoch))
  stream = stream.enumerate(start=offset)

  def make(index, instance):
    example_seed = tf.stack([tf.cast(seed, tf.int64), index])
    return _make_example(instance, example_seed, config, spec, train=True)

  ds = stream.map(make, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(local_batch, drop_remainder=True)
  return ds.prefetch(config.input.prefetch).with_options(_options())


def eval_dataset(builder, config, split: str | None = None) -> tf.data.Dataset:
  """Every scored instance of the eval split once, in a fixed order, unaugmented.

  Batches of `eval.batch_size`, the last one short.
  """
  spec = keypoints_lib.get_spec(config.dataset.keypoints)
  split = split or config.dataset.eval_split
  instances = _records(builder, split).flat_map(_explode_instances).filter(
      _is_person_instance)
  ds = instances.map(
      lambda inst: _make_example(inst, tf.constant([0, 0], tf.int64), config, spec, False),
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(config.eval.batch_size).prefetch(2).with_options(_options())
  return ds


def ground_truth(builder, split: str) -> dict:
  """The split's annotations as an in-memory COCO dict, for pycocotools."""
  spec = keypoints_lib.get_spec(builder.builder_config.keypoints)
  images, annotations = [], []
  ds = builder.as_dataset(split=split, shuffle_files=False,
                          decoders={'image': tfds.decode.SkipDecoding()})
  for record in ds.as_numpy_iterator():
    image_id = int(record['image/id'])
    images.append({'id': image_id})
    objs = record['objects']
    for i in range(len(objs['id'])):
      kps = np.concatenate(
          [objs['keypoints'][i], objs['visibility'][i][:, None]], axis=1)
      annotations.append({
          'id': int(objs['id'][i]),
          'image_id': image_id,
          'category_id': 1,
          'bbox': [float(v) for v in objs['bbox'][i]],
          'area': float(objs['area'][i]),
          'iscrowd': int(objs['iscrowd'][i]),
          'num_keypoints': int(objs['num_keypoints'][i]),
          'keypoints': [float(v) for v in kps.reshape(-1)],
      })
  return {
      'images': images,
      'annotations': annotations,
      'categories': [{'id': 1, 'name': 'person', 'supercategory': 'person',
                      'keypoints': list(spec.keypoint_names),
                      'skeleton': [[a + 1, b + 1] for a, b in spec.skeleton]}],
  }
