"""The top-down streams: one example per person instance (tf.data, host CPU).

One example per person instance: decode the image, take the instance box,
compute the affine crop (centre/scale, with random scale, rotation, flip and
half-body in training), warp the image with TF ops and move the keypoints with
the same matrix. It emits uint8 images, keypoints in input-pixel coordinates,
visibility and the metadata that maps predictions back to the image. It never
renders targets: that happens on device (`posejax.codecs`). The batches
are posejax/batches.py's.

Determinism: every random draw of an instance comes from a stateless op seeded
by (config.seed, the instance's position in the training stream), and each
epoch is shuffled with a seed derived from the epoch number. A run restarted at
step N therefore sees exactly the data an uninterrupted run sees from step N,
without replaying the augmentation of the steps before it.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from posejax import geometry
from posejax import keypoints as keypoints_lib
from posejax.data.pipeline import augment
from posejax.data.pipeline import resample


def _explode_instances(record):
  """An image record -> a dataset of its person instances, sharing its image.

  The image is the record's as it comes: encoded bytes, or a decoded uint8
  array when the train split caches decoded images.
  """
  image, image_id = record['image'], record['image/id']
  return tf.data.Dataset.from_tensor_slices(dict(record['objects'])).map(
      lambda instance: {**instance, 'image': image, 'image_id': image_id})


def _is_person_instance(instance):
  """Instances that train and that the ground-truth-box evaluation scores.

  Works on one instance or on a record's `objects` (then elementwise).
  """
  bbox = instance['bbox']
  return ((instance['num_keypoints'] > 0) & (instance['iscrowd'] == 0)
          & (bbox[..., 2] > 1) & (bbox[..., 3] > 1))


def _make_example(instance, seed, config, spec, train: bool, eval_extras=()):
  input_size = tuple(config.input.size)
  image = instance['image']
  # Training reads only the window its crop samples (`resample.window`);
  # evaluation decodes and warps whole images, as prediction on images does.
  if image.dtype == tf.string and not train:
    image = resample.decode(image)
  bbox = instance['bbox']
  if config.input.crop == 'official' and 'box_score' not in instance:
    # An annotated box (not a detection), as the official loader cleans it.
    size = tf.cast(resample.image_shape(image), tf.float32)
    bbox = geometry.clip_box_official(tf.cast(bbox, tf.float32), size[1], size[0],
                                      xp=tf)
  def crop_geometry(bbox, keypoints, visibility, seed):
    return augment.crop_geometry(bbox, keypoints, visibility, seed,
                                 config=config, spec=spec, train=train)
  if train:
    # XLA fuses the augmentation's hundred-odd small ops into a few loops:
    # about 60 us less per crop on a CPU core, a tenth of a crop's cost.
    crop_geometry = tf.function(crop_geometry, jit_compile=True)
  center, scale, matrix, keypoints, visibility = crop_geometry(
      bbox, instance['keypoints'], instance['visibility'], seed)
  example = {
      'image': (resample.crop_window(image, matrix, input_size) if train
                else resample.warp_image(image, matrix, input_size)),
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


def stream_options():
  options = tf.data.Options()
  options.deterministic = True
  # No autotuning: `AUTOTUNE` parallelism then means one call per core, which
  # is what a CPU-bound crop pipeline wants anyway. The autotuner's model
  # thread re-optimises this pipeline's model every so often, on up to two
  # cores, time taken from the train step; and an iterator waits for its pass
  # in flight to finish before it can be destroyed (seen as a long pause after
  # the quickstart's final eval; docs/results.md).
  options.autotune.enabled = False
  return options


def count_instances(builder, split: str) -> int:
  """Person instances in a split (reads annotations only, decodes no image)."""
  ds = _records(builder, split).map(
      lambda r: tf.reduce_sum(tf.cast(_is_person_instance(r['objects']), tf.int64)))
  return int(ds.reduce(tf.constant(0, tf.int64), lambda a, b: a + b))


def resumable_stream(items: tf.data.Dataset, num_items: int, config, *,
                     start_step: int, process_index: int,
                     process_count: int) -> tf.data.Dataset:
  """(index in the stream, item) of an endless shuffled walk over `items`.

  Each epoch is shuffled with a seed derived from (config.seed, its
  number); the walk starts at the item the train step `start_step` reads
  first, and with several processes each keeps its rows of every global
  batch (process p: rows [p * L, (p + 1) * L)). Both training streams
  (person crops here, whole images in whole_image.py) walk their items so.
  """
  global_batch = config.train.global_batch_size
  local_batch = global_batch // process_count
  buffer = min(config.input.shuffle_buffer, num_items)
  seed = config.seed

  def epoch(e):
    return items.shuffle(buffer, seed=seed * 1_000_003 + e,
                         reshuffle_each_iteration=False)

  offset = start_step * global_batch
  first_epoch, skip = divmod(offset, num_items)
  stream = epoch(tf.constant(first_epoch, tf.int64)).skip(skip).concatenate(
      tf.data.Dataset.range(first_epoch + 1, 2**62).flat_map(epoch))
  stream = stream.enumerate(start=offset)
  if process_count > 1:
    stream = stream.filter(
        lambda index, _: (index % global_batch) // local_batch == process_index)
  return stream


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
  # Before the crops compile (`resample.bilinear_crop`).
  resample.start_tensorflow_xla()
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
    records = records.map(lambda r: {**r, 'image': resample.decode(r['image'])},
                          num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    instances = records.flat_map(_explode_instances).filter(_is_person_instance).cache()
  else:
    instances = records.flat_map(_explode_instances).filter(_is_person_instance)

  stream = resumable_stream(instances, num_instances, config, start_step=start_step,
                            process_index=process_index, process_count=process_count)
  seed = config.seed

  def make(index, instance):
    example_seed = tf.stack([tf.cast(seed, tf.int64), index])
    return _make_example(instance, example_seed, config, spec, train=True)

  ds = stream.map(make, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(local_batch, drop_remainder=True)
  return ds.prefetch(config.input.prefetch).with_options(stream_options())


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
      stream_options())
