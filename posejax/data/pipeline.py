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

import json
import math
import os

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from posejax import keypoints as keypoints_lib

# Per-instance record fields that evaluation examples carry unchanged, when the
# dataset has them: the metrics need them (PCKh head boxes, the FashionAI
# garment category, the WFLW attribute flags) and training never does.
EVAL_EXTRAS = ('head_box', 'category', 'attributes')

# COCO category of the detections used as boxes (`config.eval.boxes`).
PERSON_CATEGORY_ID = 1


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
  """An image record -> a dataset of its person instances, sharing its image.

  The image is the record's as it comes: encoded bytes, or a decoded uint8
  array when the train split caches decoded images.
  """
  image, image_id = record['image'], record['image/id']
  return tf.data.Dataset.from_tensor_slices(dict(record['objects'])).map(
      lambda instance: {**instance, 'image': image, 'image_id': image_id})


def _decode(encoded):
  return tf.io.decode_image(encoded, channels=3, expand_animations=False)


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
  image = instance['image']
  if image.dtype == tf.string:
    image = _decode(image)
  keypoints = transform_points(instance['keypoints'], matrix)
  visibility = instance['visibility']
  flip_index = tf.constant(spec.flip_index)
  keypoints = tf.where(flip, tf.gather(keypoints, flip_index), keypoints)
  visibility = tf.where(flip, tf.gather(visibility, flip_index), visibility)
  example = {
      'image': warp_image(image, matrix, input_size),
      'keypoints': keypoints,
      'visibility': visibility,
      'image_id': instance['image_id'],
      'instance_id': instance['id'],
      'bbox': instance['bbox'],
      'center': center,
      'scale': scale,
      # Ground-truth boxes count as certain; detections bring their score.
      'box_score': instance.get('box_score', tf.constant(1.0)),
  }
  if not train:
    # The annotation as recorded, so that metrics compare in image pixels
    # without a round trip through the crop.
    example['gt_keypoints'] = instance['keypoints']
    example.update({k: instance[k] for k in EVAL_EXTRAS if k in instance})
  return example


def _records(builder, split: str):
  return builder.as_dataset(
      split=split, shuffle_files=False,
      decoders={'image': tfds.decode.SkipDecoding()},
      read_config=tfds.ReadConfig(try_autocache=False))


def _options():
  options = tf.data.Options()
  options.deterministic = True
  # No autotuning: `AUTOTUNE` parallelism then means one call per core, which
  # is what a CPU-bound crop pipeline wants anyway. The autotuner's model
  # thread re-optimises this pipeline's model every so often, at up to two
  # cores for tens of seconds per pass on the quickstart, taken from the train
  # step; and an iterator waits for its pass in flight to finish before it
  # can be destroyed (seen as a 50 s pause after the final eval).
  options.autotune.enabled = False
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
  records = _records(builder, split)
  if config.input.get('cache_decoded_images', False):
    # Each image is decoded once instead of once per instance and epoch; the
    # cache holds the split's images decoded (uint8) in host memory.
    records = records.map(lambda r: {**r, 'image': _decode(r['image'])},
                          num_parallel_calls=tf.data.AUTOTUNE,
                          deterministic=True).cache()
  instances = records.flat_map(_explode_instances).filter(_is_person_instance)

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


def detection_file(config) -> str | None:
  """The person-detection results file of `config.eval.boxes`, or None.

  'ground_truth' (the default) means the annotated boxes. Any other value is
  the path of a COCO detection results file; a relative path is taken
  relative to `dataset.manual_dir`, where the recipes expect it.
  """
  boxes = config.eval.get('boxes', 'ground_truth') or 'ground_truth'
  if boxes == 'ground_truth':
    return None
  path = os.path.expanduser(boxes)
  if not os.path.isabs(path):
    path = os.path.join(os.path.expanduser(config.dataset.get('manual_dir') or ''), path)
  return path


def load_detections(path: str, score_threshold: float = 0.0
                    ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
  """Person boxes of a COCO detection results file, by image id.

  The file is a json list of `{"image_id", "category_id", "bbox": [x, y, w,
  h], "score"}` (the COCO results format, e.g. the official HRNet
  COCO_val2017_detections_AP_H_56_person.json). Kept: category 1 (person)
  with score >= `score_threshold` (TEST.IMAGE_THRE of the official code, 0.0)
  and a box of positive width and height, in file order.

  Returns:
    image id -> (boxes (n, 4) float32, scores (n,) float32).

  Raises:
    FileNotFoundError: no such file.
    ValueError: the file is not a list of such entries.
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f'eval.boxes: no detection results file at {path}. Set '
        '--config.eval.boxes to the file (relative paths are taken from '
        'dataset.manual_dir; the official HRNet person detections, '
        'COCO_val2017_detections_AP_H_56_person.json, are linked from '
        'github.com/leoxiaobin/deep-high-resolution-net.pytorch under "Data '
        "preparation\"), or to 'ground_truth' for the annotated boxes.")
  with open(path) as f:
    try:
      entries = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f'{path} is not valid json: {e}') from None
  fields = ('image_id', 'category_id', 'bbox', 'score')
  if not isinstance(entries, list) or any(
      not isinstance(e, dict) or any(k not in e for k in fields) for e in entries):
    raise ValueError(
        f'{path} should be a COCO detection results file: a json list of '
        f'{{{", ".join(fields)}}} entries.')
  by_image: dict[int, list] = {}
  degenerate = 0
  for e in entries:
    if e['category_id'] != PERSON_CATEGORY_ID or e['score'] < score_threshold:
      continue
    box = np.asarray(e['bbox'], np.float32)
    if box.shape != (4,) or not np.all(np.isfinite(box)) or min(box[2], box[3]) <= 0:
      degenerate += 1  # no crop can be made of it
      continue
    by_image.setdefault(int(e['image_id']), []).append((box, e['score']))
  if degenerate:
    logging.warning('%s: skipped %d person detection(s) without a positive '
                    'finite box.', path, degenerate)
  return {
      image_id: (np.stack([b for b, _ in dets]),
                 np.asarray([s for _, s in dets], np.float32))
      for image_id, dets in by_image.items()
  }


def _detection_instances(records: tf.data.Dataset, detections: dict,
                         num_keypoints: int) -> tf.data.Dataset:
  """Records -> one instance per detection box of their image.

  Images without detections contribute nothing. A detection instance has no
  keypoints (all unlabelled); its `id` is its position among the kept
  detections, its `box_score` the detector's score.
  """
  image_ids = sorted(detections)
  counts = np.asarray([len(detections[i][1]) for i in image_ids], np.int64)
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
  boxes = np.concatenate([detections[i][0] for i in image_ids] or [np.zeros((0, 4))])
  scores = np.concatenate([detections[i][1] for i in image_ids] or [np.zeros((0,))])
  row = tf.lookup.StaticHashTable(
      tf.lookup.KeyValueTensorInitializer(
          tf.constant(image_ids, tf.int64),
          tf.range(len(image_ids), dtype=tf.int64)), default_value=-1)
  starts, counts = tf.constant(starts), tf.constant(counts)
  boxes = tf.constant(boxes, tf.float32)
  scores = tf.constant(scores, tf.float32)

  def explode(record):
    r = row.lookup(record['image/id'])
    start = tf.gather(starts, r)
    end = start + tf.gather(counts, r)
    n = end - start
    return tf.data.Dataset.from_tensor_slices({
        'image': tf.fill([n], record['image']),
        'image_id': tf.fill([n], record['image/id']),
        'id': tf.range(start, end),
        'bbox': boxes[start:end],
        'box_score': scores[start:end],
        'keypoints': tf.zeros([n, num_keypoints, 2], tf.float32),
        'visibility': tf.zeros([n, num_keypoints], tf.int32),
    })

  has_detections = lambda record: row.lookup(record['image/id']) >= 0
  return records.filter(has_detections).flat_map(explode)


def eval_dataset(builder, config, split: str | None = None, *,
                 ground_truth_boxes: bool = False) -> tf.data.Dataset:
  """Every scored instance of the eval split once, in a fixed order, unaugmented.

  With `config.eval.boxes` = 'ground_truth' an instance is an annotated
  object (as in training); with a detection results file it is a person
  detection (`load_detections`). Batches of `eval.batch_size`, the last one
  short. Besides the training fields, examples carry `gt_keypoints` (the
  annotation in image pixels) and the dataset's EVAL_EXTRAS.
  `ground_truth_boxes` ignores eval.boxes (the validation loss needs the
  annotated instances).
  """
  spec = keypoints_lib.get_spec(config.dataset.keypoints)
  split = split or config.dataset.eval_split
  path = None if ground_truth_boxes else detection_file(config)
  if path is None:
    instances = _records(builder, split).flat_map(_explode_instances).filter(
        _is_person_instance)
  else:
    detections = load_detections(path, config.eval.get('box_score_threshold', 0.0))
    instances = _detection_instances(_records(builder, split), detections,
                                     spec.num_keypoints)
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
