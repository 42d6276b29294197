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

import functools
import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from posejax import geometry
from posejax import keypoints as keypoints_lib

# ---------------------------------------------------------------- geometry
# The crop itself is posejax/geometry.py's (shared with prediction); here it is
# built with TensorFlow ops inside tf.data and applied to images and points.

def box_to_center_scale(bbox, aspect_ratio: float, padding: float):
  return geometry.box_to_center_scale(tf.cast(bbox, tf.float32), aspect_ratio,
                                      padding, xp=tf)


def crop_matrix(center, scale, rotation_deg, output_size, flip=False,
                crop: str = 'centred'):
  return geometry.crop_matrix(
      tf.cast(center, tf.float32), tf.cast(scale, tf.float32),
      tf.cast(rotation_deg, tf.float32), output_size, tf.cast(flip, tf.bool),
      xp=tf, crop=crop)


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
  scale = geometry.fix_aspect(hi[0] - lo[0], hi[1] - lo[1], aspect_ratio, xp=tf)
  ok = (n >= 2) & tf.reduce_all(scale > 0)
  return ok, center, scale * 1.5


def _augment(keypoints, visibility, seed, input_config, spec, aspect_ratio, center,
             scale):
  """Random half-body, scale, rotation and flip for one training instance."""
  seeds = tf.random.experimental.stateless_split(seed, num=7)
  uniform = lambda i: tf.random.stateless_uniform([], seeds[i])
  normal = lambda i: tf.random.stateless_normal([], seeds[i])

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


def _is_jpeg(encoded):
  return tf.strings.substr(encoded, 0, 3) == b'\xff\xd8\xff'


def _image_shape(image):
  """(height, width, channels) of a decoded image, or of encoded bytes."""
  if image.dtype != tf.string:
    return tf.shape(image)
  return tf.cond(_is_jpeg(image), lambda: tf.io.extract_jpeg_shape(image),
                 lambda: tf.shape(_decode(image)))


def _window(image, matrix, output_size):
  """The part of an image that a crop samples, as uint8, and the crop's matrix
  for that part.

  A training crop of a person usually covers a fraction of a photo. The
  window is the box around the crop's corners (one pixel beyond the output
  and a two-pixel margin for bilinear sampling), clipped to the image. A JPEG
  is decoded only inside it, with `decode_and_crop_jpeg`, which skips the
  rest of the image; other formats are decoded whole and cut; a decoded image
  (`input.cache_decoded_images`) is cut. Either way the resampling that
  follows converts and reads only the window, and the matrix is shifted to
  the window's origin.
  """
  height, width = output_size
  inverse = tf.linalg.inv(matrix)
  corners = tf.constant([[-1, -1], [width, -1], [-1, height], [width, height]],
                        tf.float32)
  source = tf.linalg.matmul(corners, inverse[:2, :2], transpose_b=True) + inverse[:2, 2]
  low = tf.cast(tf.floor(tf.reduce_min(source, 0)), tf.int32) - 2
  high = tf.cast(tf.math.ceil(tf.reduce_max(source, 0)), tf.int32) + 2

  def bounds(shape):
    limit = tf.stack([shape[1], shape[0]]) - 1  # (x, y) of the last pixel
    start = tf.clip_by_value(low, 0, limit)
    end = tf.clip_by_value(high, start, limit)
    return start, end - start + 1

  def cut(decoded):
    start, size = bounds(tf.shape(decoded))
    return (tf.slice(decoded, tf.stack([start[1], start[0], 0]),
                     tf.stack([size[1], size[0], 3])), start)

  def jpeg_window():
    start, size = bounds(tf.io.extract_jpeg_shape(image))
    window = tf.stack([start[1], start[0], size[1], size[0]])
    return tf.io.decode_and_crop_jpeg(image, window, channels=3), start

  if image.dtype == tf.string:
    window, start = tf.cond(_is_jpeg(image), jpeg_window, lambda: cut(_decode(image)))
  else:
    window, start = cut(image)
  shift = tf.tensor_scatter_nd_update(tf.eye(3), [[0, 2], [1, 2]],
                                      tf.cast(start, tf.float32))
  return window, tf.linalg.matmul(matrix, shift)


# The resampler's input is padded to a few lengths (`_bucket_rows`), so
# that XLA compiles it for a dozen shapes rather than one per window size.
_MIN_ROWS = 4096


def _bucket_rows(pixels):
  """Rows for a window of `pixels` pixels: at least one zero row past them
  (the fill), rounded up to 2^k or 1.5 * 2^k (at least `_MIN_ROWS`)."""
  rows = tf.cast(pixels + 1, tf.float64)  # exact: float32 is not above 2^24
  octave = tf.math.ceil(tf.math.log(rows) / np.log(2.0))
  bucket = tf.where(rows <= 0.75 * 2.0**octave, 0.75 * 2.0**octave, 2.0**octave)
  # Never short of the rows, whatever the logarithm's last bit.
  return tf.maximum(tf.cast(bucket, tf.int32), tf.maximum(pixels + 1, _MIN_ROWS))


def _crop_window(image, matrix, output_size):
  """The training crop: the window it samples (`_window`), resampled by
  `_bilinear_crop`."""
  window, shifted = _window(image, matrix, output_size)
  shape = tf.shape(window)
  pixels = shape[0] * shape[1]
  flat = tf.pad(tf.reshape(window, [-1, 3]), [[0, _bucket_rows(pixels) - pixels], [0, 0]])
  return _bilinear_crop(flat, shape[:2], tf.linalg.inv(shifted), tuple(output_size))


@functools.cache
def _start_tensorflow_xla() -> None:
  """Starts TensorFlow's XLA without the flags in $XLA_FLAGS.

  TensorFlow's XLA reads XLA_FLAGS once, at its first compilation, and
  aborts the process on a flag it does not know. Those flags are meant for
  JAX, whose XLA is another version with other flags (and `import posejax`
  adds XLA:CPU ones), so TensorFlow's starts with none; the variable is back
  as it was before this returns, and JAX reads it as usual.
  """
  flags = os.environ.pop('XLA_FLAGS', None)
  try:
    tf.function(lambda x: x + 1, jit_compile=True)(tf.constant(0))
  finally:
    if flags is not None:
      os.environ['XLA_FLAGS'] = flags


@tf.function(jit_compile=True, reduce_retracing=True)
def _bilinear_crop(flat, size, inverse, output_size):
  """`warp_image` of a window given as rows of pixels, compiled by XLA.

  flat: (N, 3) uint8, the window's h * w pixels row-major, then zero rows
  (N > h * w); size: (h, w); inverse: 3x3, output pixels -> window pixels.
  Bilinear samples with a constant zero fill, as `ImageProjectiveTransformV3`
  gives them (within one level: rounding), about three times faster on a CPU
  core, rotated or not: TensorFlow's kernel computes every output value
  through a generic per-element generator, XLA fuses the sampling into one
  loop of gathers. XLA compiles once per length N, which the caller rounds
  up to a few buckets.
  """
  out_h, out_w = output_size
  h, w = size[0], size[1]
  ys, xs = tf.meshgrid(tf.range(out_h, dtype=tf.float32),
                       tf.range(out_w, dtype=tf.float32), indexing='ij')
  # Source positions, clipped to a pixel beyond the window (all fill) so
  # that far-away crops cannot overflow the integer indices.
  sx = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
  sy = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
  sx = tf.clip_by_value(sx, -2.0, tf.cast(w + 1, tf.float32))
  sy = tf.clip_by_value(sy, -2.0, tf.cast(h + 1, tf.float32))
  x0, y0 = tf.floor(sx), tf.floor(sy)
  fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
  x0, y0 = tf.cast(x0, tf.int32), tf.cast(y0, tf.int32)

  def tap(y, x):
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    row = tf.where(inside, y * w + x, h * w)  # row h * w is zero: the fill
    return tf.cast(tf.gather(flat, row), tf.float32)

  top = tap(y0, x0) * (1.0 - fx) + tap(y0, x0 + 1) * fx
  bottom = tap(y0 + 1, x0) * (1.0 - fx) + tap(y0 + 1, x0 + 1) * fx
  value = top * (1.0 - fy) + bottom * fy
  return tf.cast(tf.clip_by_value(tf.round(value), 0, 255), tf.uint8)


def _is_person_instance(instance):
  """Instances that train and that the ground-truth-box evaluation scores.

  Works on one instance or on a record's `objects` (then elementwise).
  """
  bbox = instance['bbox']
  return ((instance['num_keypoints'] > 0) & (instance['iscrowd'] == 0)
          & (bbox[..., 2] > 1) & (bbox[..., 3] > 1))


def _crop_geometry(bbox, keypoints, visibility, seed, *, config, spec, train: bool):
  """An instance's crop: centre, scale (augmented in training), the matrix
  from image to input pixels, and the keypoints and visibility in the crop
  (mirrored with the image when the crop is flipped)."""
  input_size = tuple(config.input.size)
  aspect_ratio = input_size[1] / input_size[0]
  center, scale = box_to_center_scale(bbox, aspect_ratio, config.input.padding)
  if train:
    center, scale, rotation, flip = _augment(
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


def _make_example(instance, seed, config, spec, train: bool, eval_extras=()):
  input_size = tuple(config.input.size)
  image = instance['image']
  # Training reads only the window its crop samples (`_window`); evaluation
  # decodes and warps whole images, as prediction on images does.
  if image.dtype == tf.string and not train:
    image = _decode(image)
  bbox = instance['bbox']
  if config.input.crop == 'official' and 'box_score' not in instance:
    # An annotated box (not a detection), as the official loader cleans it.
    size = tf.cast(_image_shape(image), tf.float32)
    bbox = geometry.clip_box_official(tf.cast(bbox, tf.float32), size[1], size[0],
                                      xp=tf)
  def crop_geometry(bbox, keypoints, visibility, seed):
    return _crop_geometry(bbox, keypoints, visibility, seed, config=config, spec=spec,
                          train=train)
  if train:
    # XLA fuses the augmentation's hundred-odd small ops into a few loops:
    # about 60 us less per crop on a CPU core, a tenth of a crop's cost.
    crop_geometry = tf.function(crop_geometry, jit_compile=True)
  center, scale, matrix, keypoints, visibility = crop_geometry(
      bbox, instance['keypoints'], instance['visibility'], seed)
  example = {
      'image': (_crop_window(image, matrix, input_size) if train
                else warp_image(image, matrix, input_size)),
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
    example.update({k: instance[k] for k in eval_extras})
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
  # thread re-optimises this pipeline's model every so often, on up to two
  # cores, time taken from the train step; and an iterator waits for its pass
  # in flight to finish before it can be destroyed (seen as a long pause after
  # the quickstart's final eval; README.md, Results).
  options.autotune.enabled = False
  return options


def count_instances(builder, split: str) -> int:
  """Person instances in a split (reads annotations only, decodes no image)."""
  ds = _records(builder, split).map(
      lambda r: tf.reduce_sum(tf.cast(_is_person_instance(r['objects']), tf.int64)))
  return int(ds.reduce(tf.constant(0, tf.int64), lambda a, b: a + b))


def train_dataset(builder, config, *, start_step: int = 0, process_index: int = 0,
                  process_count: int = 1) -> tf.data.Dataset:
  """Infinite batches of augmented training instances for this host.

  Every host walks the same shuffled stream of the whole split, and keeps its
  `train.global_batch_size // process_count` rows of each global batch
  before anything is decoded: process p holds rows [p * L, (p + 1) * L) of
  every global batch. Each instance's augmentation is drawn from the seed
  and its position in the stream, so the global batches are the same for
  any number of processes (a run may resume on another number of hosts),
  and batch b of the stream is the one the train step `start_step + b`
  consumes.
  """
  spec = keypoints_lib.get_spec(builder.builder_config.keypoints)
  _start_tensorflow_xla()  # before the crops compile (`_bilinear_crop`)
  global_batch = config.train.global_batch_size
  if global_batch % process_count:
    raise ValueError(f'train.global_batch_size = {global_batch} does not split '
                     f'over {process_count} processes.')
  local_batch = global_batch // process_count
  split = config.dataset.train_split
  num_instances = count_instances(builder, split)
  if num_instances == 0:
    raise ValueError(f'No person instances with keypoints in split {split!r}.')
  records = _records(builder, split)
  if config.input.cache_decoded_images:
    # Each image is decoded once instead of once per instance and epoch; the
    # cache holds the split's images decoded (uint8) in host memory, and its
    # instances, which share their image's buffer, so that later epochs
    # neither parse records nor split them into instances again.
    records = records.map(lambda r: {**r, 'image': _decode(r['image'])},
                          num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    instances = records.flat_map(_explode_instances).filter(_is_person_instance).cache()
  else:
    instances = records.flat_map(_explode_instances).filter(_is_person_instance)

  buffer = min(config.input.shuffle_buffer, num_instances)
  seed = config.seed
  def epoch(e):
    return instances.shuffle(buffer, seed=seed * 1_000_003 + e,
                             reshuffle_each_iteration=False)

  offset = start_step * global_batch
  first_epoch, skip = divmod(offset, num_instances)
  stream = epoch(tf.constant(first_epoch, tf.int64)).skip(skip).concatenate(
      tf.data.Dataset.range(first_epoch + 1, 2**62).flat_map(epoch))
  stream = stream.enumerate(start=offset)
  if process_count > 1:
    stream = stream.filter(
        lambda index, _: (index % global_batch) // local_batch == process_index)

  def make(index, instance):
    example_seed = tf.stack([tf.cast(seed, tf.int64), index])
    return _make_example(instance, example_seed, config, spec, train=True)

  ds = stream.map(make, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(local_batch, drop_remainder=True)
  return ds.prefetch(config.input.prefetch).with_options(_options())


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
                 detections: dict | None = None, process_index: int = 0,
                 process_count: int = 1) -> tf.data.Dataset:
  """Every scored instance of the eval split once, in a fixed order, unaugmented.

  Without `detections` an instance is an annotated object (as in training);
  with them (image id -> (boxes, scores), `evaluation.detections`) it is one
  detection box. Batches of `eval.batch_size`, the last one short. Besides
  the training fields, examples carry `gt_keypoints` (the annotation in image
  pixels) and the fields the builder names in EVAL_EXTRAS (`posejax/data`).

  With several processes, process p reads the p-th of `process_count`
  contiguous shares of the split's images (`tfds.even_splits`), in batches
  of `eval.batch_size // process_count`; concatenated in process order,
  their instances are the single-process ones in the same order.
  """
  spec = keypoints_lib.get_spec(builder.builder_config.keypoints)
  split = split or config.dataset.eval_split
  if process_count > 1:
    split = tfds.even_splits(split, n=process_count, drop_remainder=False)[process_index]
  records = _records(builder, split)
  if detections is None:
    instances = records.flat_map(_explode_instances).filter(_is_person_instance)
    eval_extras = builder.EVAL_EXTRAS
  else:
    instances = _detection_instances(records, detections, spec.num_keypoints)
    eval_extras = ()  # a detection is no annotated object
  ds = instances.map(
      lambda inst: _make_example(inst, tf.constant([0, 0], tf.int64), config, spec,
                                 False, eval_extras),
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return ds.batch(config.eval.batch_size // process_count).prefetch(2).with_options(
      _options())
