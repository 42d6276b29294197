"""The whole-image streams of bottom-up networks (tf.data, host CPU).

One example per image: the image warped to the square input, every person's
keypoints through the same matrix (padded to `input.max_people`, with
visibility 0 in the padding), and the ignore mask (crowds and people
without keypoints, `ignore_mask` of the COCO records; zeros for records
without one) warped alike. Targets are rendered on device by the codec
(posejax/codecs/embedding.py). The batches are posejax/batches.py's
`WholeImageBatch`.

Training follows HigherHRNet's RandomAffineTransform and flip: a square of
the image's shorter side times a uniform factor in
`input.whole_image_scale`, centred on the image centre shifted by a uniform
fraction up to `input.whole_image_translate` of the square's side on each
axis, rotated by a uniform angle up to `input.whole_image_rotation`
degrees, mirrored with left/right swapped with probability 0.5
(`input.flip`). Evaluation shows the whole image: a square of its longer
side centred on it (padded with black), so that one input size serves every
image. The official test instead scales the shorter side to the input and
lets the longer side run (in multiples of 64), which sees the larger people
at a higher resolution.

Determinism and resumption are those of the top-down stream
(posejax/data/pipeline/top_down.py): each image's draws come from (seed,
its position in the stream), epochs are shuffled with seeds derived from
their number, and process p keeps rows [p * L, (p + 1) * L) of every global
batch.
"""

from __future__ import annotations

from absl import logging
import tensorflow as tf
import tensorflow_datasets as tfds

from posejax import keypoints as keypoints_lib
from posejax.data.pipeline import augment
from posejax.data.pipeline import resample
from posejax.data.pipeline import top_down


def _people(objects):
  """Objects that are people to find: labelled keypoints, no crowd."""
  return (objects['num_keypoints'] > 0) & (objects['iscrowd'] == 0)


def _has_people(record):
  return tf.reduce_any(_people(record['objects']))


def _records(builder, split: str):
  return builder.as_dataset(
      split=split, shuffle_files=False,
      decoders={'image': tfds.decode.SkipDecoding(),
                **({'ignore_mask': tfds.decode.SkipDecoding()}
                   if 'ignore_mask' in builder.info.features else {})},
      read_config=tfds.ReadConfig(try_autocache=False))


def count_images(builder, split: str, max_people: int) -> tuple[int, int, int]:
  """(images with people, of them with more than `max_people`, people
  dropped) of a split; reads annotations only."""
  def counts(record):
    n = tf.reduce_sum(tf.cast(_people(record['objects']), tf.int64))
    return tf.stack([tf.cast(n > 0, tf.int64), tf.cast(n > max_people, tf.int64),
                     tf.maximum(n - max_people, 0)])
  total = _records(builder, split).map(counts).reduce(
      tf.zeros([3], tf.int64), lambda a, b: a + b)
  return tuple(int(v) for v in total.numpy())


def log_dropped_people(builder, split: str, max_people: int) -> int:
  """Logs how many people `input.max_people` drops; returns the image count."""
  images, crowded, dropped = count_images(builder, split, max_people)
  if dropped:
    logging.warning(
        '%s: %d images hold more than input.max_people = %d people; their %d '
        'extra people are dropped (raise input.max_people to keep them).',
        split, crowded, max_people, dropped)
  return images


def _geometry(height, width, seed, config, train: bool):
  """(centre, square side, rotation, flip) of an image's crop."""
  h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
  center = tf.stack([(w - 1) / 2, (h - 1) / 2])
  if not train:
    return center, tf.maximum(h, w), tf.constant(0.0), tf.constant(False)
  seeds = tf.random.experimental.stateless_split(seed, num=5)
  uniform = lambda i, lo, hi: tf.random.stateless_uniform([], seeds[i], lo, hi)
  c = config.input
  low, high = c.whole_image_scale
  side = tf.minimum(h, w) * uniform(0, low, high)
  shift = c.whole_image_translate * side
  center = center + tf.stack([uniform(1, -shift, shift), uniform(2, -shift, shift)])
  rotation = uniform(3, -c.whole_image_rotation, c.whole_image_rotation)
  flip = (uniform(4, 0.0, 1.0) < 0.5) if c.flip else tf.constant(False)
  return center, side, rotation, flip


def _make_example(record, seed, config, spec, train: bool):
  input_size = tuple(config.input.size)
  max_people = config.input.max_people
  image = record['image']
  if image.dtype == tf.string:
    image = resample.decode(image)
  shape = tf.shape(image)
  center, side, rotation, flip = _geometry(shape[0], shape[1], seed, config, train)
  scale = tf.stack([side, side])
  matrix = augment.crop_matrix(center, scale, rotation, input_size, flip)

  objects = record['objects']
  keep = _people(objects)
  keypoints = tf.boolean_mask(objects['keypoints'], keep)[:max_people]
  visibility = tf.boolean_mask(objects['visibility'], keep)[:max_people]
  n = tf.shape(keypoints)[0]
  k = spec.num_keypoints
  keypoints = (tf.linalg.matmul(tf.reshape(keypoints, [-1, 2]), matrix[:2, :2],
                                transpose_b=True) + matrix[:2, 2])
  keypoints = tf.reshape(keypoints, [-1, k, 2])
  flip_index = tf.constant(spec.flip_index)
  keypoints = tf.where(flip, tf.gather(keypoints, flip_index, axis=1), keypoints)
  visibility = tf.where(flip, tf.gather(visibility, flip_index, axis=1), visibility)
  pad = [[0, max_people - n], [0, 0]]
  keypoints = tf.pad(keypoints, pad + [[0, 0]])
  visibility = tf.pad(visibility, pad)

  if 'ignore_mask' in record:
    mask = tf.io.decode_png(record['ignore_mask'], channels=1)
    ignore = resample.warp_image(mask, matrix, input_size)[..., 0]
  else:
    ignore = tf.zeros(input_size, tf.uint8)
  return {
      'image': resample.warp_image(image, matrix, input_size),
      'keypoints': tf.ensure_shape(keypoints, [max_people, k, 2]),
      'visibility': tf.ensure_shape(visibility, [max_people, k]),
      'ignore_mask': tf.ensure_shape(ignore, input_size),
      'image_id': record['image/id'],
      'center': center,
      'scale': scale,
  }


def train_dataset(builder, config, *, start_step: int = 0, process_index: int = 0,
                  process_count: int = 1) -> tf.data.Dataset:
  """Infinite batches of augmented whole images for this host (see the
  module docstring; resumable as the top-down stream)."""
  spec = keypoints_lib.get_spec(builder.builder_config.keypoints)
  global_batch = config.train.global_batch_size
  if global_batch % process_count:
    raise ValueError(f'train.global_batch_size = {global_batch} does not split '
                     f'over {process_count} processes.')
  local_batch = global_batch // process_count
  split = config.dataset.train_split
  num_images = log_dropped_people(builder, split, config.input.max_people)
  if num_images == 0:
    raise ValueError(f'No image with a labelled person in split {split!r}.')
  images = _records(builder, split).filter(_has_people)
  if config.input.cache_decoded_images:
    # Each image decoded once and kept in host memory (uint8).
    images = images.map(lambda r: {**r, 'image': resample.decode(r['image'])},
                        num_parallel_calls=tf.data.AUTOTUNE,
                        deterministic=True).cache()
  stream = top_down.resumable_stream(
      images, num_images, config, start_step=start_step,
      process_index=process_index, process_count=process_count)
  seed = config.seed

  def make(index, record):
    return _make_example(record, tf.stack([tf.cast(seed, tf.int64), index]),
                         config, spec, train=True)

  ds = stream.map(make, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(local_batch, drop_remainder=True)
  return ds.prefetch(config.input.prefetch).with_options(top_down.stream_options())


def eval_dataset(builder, config, split: str | None = None, *,
                 process_index: int = 0, process_count: int = 1) -> tf.data.Dataset:
  """Every image of the eval split once, in order, unaugmented (also those
  without people: a network that finds people there is wrong). Batches of
  `eval.batch_size // process_count`, the last one short; with several
  processes, process p reads the p-th contiguous share of the images."""
  spec = keypoints_lib.get_spec(builder.builder_config.keypoints)
  split = split or config.dataset.eval_split
  if process_count > 1:
    split = tfds.even_splits(split, n=process_count, drop_remainder=False)[process_index]
  ds = _records(builder, split).map(
      lambda r: _make_example(r, tf.constant([0, 0], tf.int64), config, spec, False),
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return ds.batch(config.eval.batch_size // process_count).prefetch(2).with_options(
      top_down.stream_options())
