r"""Training crops/s of the input pipeline per CPU core, against plain OpenCV.

  python -m posejax.benchmark --pipeline [--cores=1,2] [--images=256]

Generates COCO-sized JPEGs (640x480, `posejax.data.synthetic`, once, under
--data_dir or a temporary directory) and measures, each in a child process
pinned to that many cores (`sched_setaffinity`):

* `posejax`: `pipeline.train_dataset` with the COCO recipes' augmentation
  (256x192 crops, scale 0.35, rotation 45 degrees on 60% of crops, half-body
  on 30%, flip; configs/hrnet_coco.py), batches of 32, as the train loop
  consumes it, reading the JPEGs (each crop decodes its window);
* `posejax cached`: the same with `input.cache_decoded_images`, timed after
  the first epoch has filled the cache (each image decoded once, kept in
  host memory: about 0.9 MB per 640x480 image);
* `opencv`: a plain loop over the same instances: `cv2.imdecode` of the JPEG,
  then `cv2.warpAffine` of the crop (bilinear) with the same kind of random
  scale and rotation, one thread. It is what a hand-written loader does for
  the same crops, without keypoints, batching or parallelism.

Reported: crops/s, crops/s per core, and the pipeline's ratio to the OpenCV
loop per core. A few thousand crops are timed because a crop's cost depends
on its window (the part of the JPEG it decodes), so a short run measures
its particular crops more than the augmentation's average. `cores_per_gpu(step_images_per_s, crops_per_s_per_core)` says
how many cores keep an accelerator of a given train-step rate fed.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

BATCH = 32
# COCO images are mostly 640x480 (or 480x640).
IMAGE_SIZE = (480, 640)
INPUT_SIZE = (256, 192)


def _config(data_dir: str, num_images: int, cached: bool = False):
  from posejax import config_lib  # pylint: disable=g-import-not-at-top
  c = config_lib.base_config()
  c.dataset.update(name='coco_keypoints', config='synthetic', data_dir=data_dir,
                   synthetic=dict(num_train=num_images, num_val=8, seed=0,
                                  image_size=IMAGE_SIZE))
  c.input.update(size=INPUT_SIZE, scale_factor=0.35, rotation_factor=45.0,
                 rotation_prob=0.6, half_body_prob=0.3, flip=True,
                 cache_decoded_images=cached, shuffle_buffer=1024)
  c.train.global_batch_size = BATCH
  return c


def _pipeline_worker(data_dir: str, num_images: int, crops: int,
                     cached: bool = False) -> dict:
  """Crops/s of `pipeline.train_dataset` on the cores this process may use."""
  from posejax import data  # pylint: disable=g-import-not-at-top
  from posejax.data import pipeline  # pylint: disable=g-import-not-at-top
  c = _config(data_dir, num_images, cached)
  builder = data.get_builder(c.dataset)
  batches = pipeline.train_dataset(builder, c).as_numpy_iterator()
  warmup = 3  # threads started, first images read, crop shapes compiled
  if cached:  # and one epoch, which fills the cache
    warmup += math.ceil(pipeline.count_instances(builder, 'train') / BATCH)
  for _ in range(warmup):
    next(batches)
  n = max(1, crops // BATCH)
  start = time.perf_counter()
  for _ in range(n):
    next(batches)
  seconds = time.perf_counter() - start
  return {'crops_per_s': n * BATCH / seconds}


def _opencv_worker(data_dir: str, num_images: int, crops: int) -> dict:
  """Crops/s of decode + warpAffine of the same instances, one thread."""
  import cv2  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from posejax import data  # pylint: disable=g-import-not-at-top
  from posejax import geometry  # pylint: disable=g-import-not-at-top
  cv2.setNumThreads(1)
  c = _config(data_dir, num_images)
  builder = data.get_builder(c.dataset)
  instances = []
  ds = builder.as_dataset(split='train', decoders={'image': tfds.decode.SkipDecoding()})
  for record in ds.as_numpy_iterator():
    for bbox, n in zip(record['objects']['bbox'], record['objects']['num_keypoints']):
      if n > 0:
        instances.append((np.frombuffer(record['image'], np.uint8), bbox))
  height, width = INPUT_SIZE
  rng = np.random.default_rng(0)

  def crop(encoded, bbox):
    image = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
    center, scale = geometry.box_to_center_scale(
        np.asarray(bbox, np.float32), width / height, 1.25)
    scale = scale * np.float32(np.clip(rng.normal() * 0.35 + 1, 0.65, 1.35))
    rotation = np.float32(rng.normal() * 45 if rng.uniform() < 0.6 else 0)
    matrix = geometry.crop_matrix(center, scale, rotation, INPUT_SIZE,
                                  np.bool_(rng.uniform() < 0.5))
    return cv2.warpAffine(image, matrix[:2].astype(np.float64), (width, height),
                          flags=cv2.INTER_LINEAR)

  for i in range(16):
    crop(*instances[i % len(instances)])
  start = time.perf_counter()
  for i in range(crops):
    crop(*instances[i % len(instances)])
  return {'crops_per_s': crops / (time.perf_counter() - start)}


WORKERS = {'posejax': _pipeline_worker,
           'posejax cached': lambda *args: _pipeline_worker(*args, cached=True),
           'opencv': _opencv_worker}


def _run_pinned(kind: str, cores: int, data_dir: str, num_images: int,
                crops: int) -> dict:
  """A worker in a child process restricted to the first `cores` CPUs."""
  allowed = sorted(os.sched_getaffinity(0))[:cores]
  # Pinned before anything starts a thread, so every thread inherits it.
  code = (f'import os; os.sched_setaffinity(0, {allowed!r}); import json; '
          'from posejax import pipeline_benchmark as b; '
          f'print(json.dumps(b.WORKERS[{kind!r}]({data_dir!r}, {num_images}, {crops})))')
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                        env=env, check=False)
  if proc.returncode:
    raise RuntimeError(f'{kind} worker on {cores} core(s) failed:\n{proc.stderr[-3000:]}')
  return json.loads(proc.stdout.strip().splitlines()[-1])


def cores_per_gpu(step_images_per_s: float, crops_per_s_per_core: float) -> int:
  """Cores whose crops keep a train step of `step_images_per_s` fed."""
  return math.ceil(step_images_per_s / crops_per_s_per_core)


def benchmark(cores=(1,), num_images: int = 256, crops: int = 3200,
              data_dir: str | None = None, log=print) -> dict:
  """Crops/s of the pipeline and the OpenCV loop on each number of cores."""
  available = len(os.sched_getaffinity(0))
  if any(not 1 <= n <= available for n in cores):
    raise ValueError(f'--cores must be within 1..{available}, got {list(cores)}.')
  say = log or (lambda _: None)
  data_dir = data_dir or os.path.join(tempfile.gettempdir(), 'posejax_pipeline_benchmark')
  say(f'{num_images} generated {IMAGE_SIZE[1]}x{IMAGE_SIZE[0]} JPEGs in {data_dir} '
      '(made on first use)')
  # Generate the records once, outside the timed children.
  from posejax import data  # pylint: disable=g-import-not-at-top
  data.get_builder(_config(data_dir, num_images).dataset)
  result = {'images': num_images, 'image_size': list(IMAGE_SIZE),
            'input_size': list(INPUT_SIZE), 'crops': crops, 'runs': []}
  opencv = _run_pinned('opencv', 1, data_dir, num_images, crops)['crops_per_s']
  say(f'opencv decode + warpAffine, 1 core: {opencv:7.1f} crops/s')
  result['opencv_crops_per_s_per_core'] = opencv
  for kind in ('posejax', 'posejax cached'):
    for n in cores:
      rate = _run_pinned(kind, n, data_dir, num_images, crops)['crops_per_s']
      per_core = rate / n
      result['runs'].append({'pipeline': kind, 'cores': n, 'crops_per_s': rate,
                             'crops_per_s_per_core': per_core,
                             'ratio_to_opencv': per_core / opencv})
      say(f'{kind:14s} {n} core(s): {rate:7.1f} crops/s, {per_core:6.1f} per core, '
          f'{per_core / opencv:.2f}x OpenCV per core')
  for kind in ('posejax', 'posejax cached'):
    best = max(r['crops_per_s_per_core'] for r in result['runs'] if r['pipeline'] == kind)
    say(f'{kind}: a train step of 1000 / 3000 images/s needs about '
        f'{cores_per_gpu(1000, best)} / {cores_per_gpu(3000, best)} cores')
  return result
