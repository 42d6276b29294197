import numpy as np
import pytest
import tensorflow as tf

from posejax import geometry
from posejax.data import pipeline
from posejax.data.pipeline import augment
from posejax.data.pipeline import resample


def _dot_image(points, size=(160, 200)):
  """Black image with a 3x3 white square centred on each integer point."""
  image = np.zeros((*size, 3), np.uint8)
  for x, y in points:
    image[y - 1:y + 2, x - 1:x + 2] = 255
  return image


def _centroid(image, near, radius=6):
  x0, y0 = int(round(near[0])), int(round(near[1]))
  patch = image[max(y0 - radius, 0):y0 + radius + 1,
                max(x0 - radius, 0):x0 + radius + 1, 0].astype(np.float64)
  ys, xs = np.mgrid[max(y0 - radius, 0):y0 + radius + 1,
                    max(x0 - radius, 0):x0 + radius + 1]
  return np.array([(patch * xs).sum(), (patch * ys).sum()]) / patch.sum()


@pytest.mark.parametrize('rotation,flip', [(0.0, False), (30.0, False), (-50.0, True)])
def test_warped_dots_land_where_the_keypoints_go(rotation, flip):
  points = np.array([[60, 50], [120, 70], [90, 110], [75, 85]])
  image = _dot_image(points)
  center, scale = tf.constant([90.0, 80.0]), tf.constant([96.0, 128.0])
  matrix = augment.crop_matrix(center, scale, rotation, (128, 96), flip)
  warped = resample.warp_image(image, matrix, (128, 96)).numpy()
  moved = augment.transform_points(tf.constant(points, tf.float32), matrix).numpy()
  for p in moved:
    np.testing.assert_allclose(_centroid(warped, p), p, atol=0.35)


def test_box_crop_maps_back_with_the_inverse():
  rng = np.random.default_rng(0)
  points = rng.uniform(0, 150, size=(5, 17, 2)).astype(np.float32)
  boxes = np.array([[10, 20, 50, 120], [0, 0, 150, 40], [30, 30, 5, 5],
                    [70, 10, 60, 60], [1, 2, 3, 100]], np.float32)
  for n in range(5):
    center, scale = augment.box_to_center_scale(boxes[n], 96 / 128, 1.25)
    # The crop keeps the input aspect ratio and covers the padded box.
    assert scale[0].numpy() / scale[1].numpy() == pytest.approx(0.75)
    assert scale[0] >= boxes[n, 2] * 1.25 - 1e-4 and scale[1] >= boxes[n, 3] * 1.25 - 1e-4
    matrix = augment.crop_matrix(center, scale, 0.0, (128, 96))
    moved = augment.transform_points(tf.constant(points[n]), matrix).numpy()
    back = geometry.input_to_image(moved[None], center.numpy()[None],
                                   scale.numpy()[None], (128, 96))[0]
    np.testing.assert_allclose(back, points[n], atol=1e-3)
  # The padded box edges land on the input's pixel edges.
  center, scale = augment.box_to_center_scale(np.array([0, 0, 96, 128], np.float32), 0.75, 1.0)
  corners = augment.transform_points(
      tf.constant([[-0.5, -0.5], [95.5, 127.5]]),
      augment.crop_matrix(center - 0.5, scale, 0.0, (128, 96))).numpy()
  np.testing.assert_allclose(corners, [[-0.5, -0.5], [95.5, 127.5]], atol=1e-4)


@pytest.mark.slow
def test_training_flip_mirrors_the_crop_and_swaps_left_and_right(
    smoke_config, smoke_builder, smoke_data_dir):
  from posejax import keypoints as keypoints_lib
  config = smoke_config('smoke')
  config.dataset.data_dir = smoke_data_dir
  config.input.update(scale_factor=0.0, rotation_prob=0.0, half_body_prob=0.0, flip=True)
  spec = keypoints_lib.COCO
  eval_ds = pipeline.eval_dataset(smoke_builder, config, 'train')
  n = pipeline.count_instances(smoke_builder, 'train')
  reference = {}
  for batch in eval_ds.as_numpy_iterator():
    for i, instance_id in enumerate(batch['instance_id']):
      reference[int(instance_id)] = (batch['image'][i], batch['keypoints'][i],
                                     batch['visibility'][i])
  width = config.input.size[1]
  seen = {'plain': 0, 'flipped': 0}
  train_iter = pipeline.train_dataset(smoke_builder, config).as_numpy_iterator()
  for _ in range(2 * n // config.train.global_batch_size):
    batch = next(train_iter)
    for i, instance_id in enumerate(batch['instance_id']):
      image, kps, vis = reference[int(instance_id)]
      if np.array_equal(batch['visibility'][i], vis) and np.allclose(batch['keypoints'][i], kps, atol=1e-3):
        np.testing.assert_allclose(batch['image'][i], image, atol=1)
        seen['plain'] += 1
        continue
      mirrored = np.stack([width - 1 - kps[:, 0], kps[:, 1]], -1)[spec.flip_index]
      np.testing.assert_allclose(batch['keypoints'][i], mirrored, atol=1e-3)
      np.testing.assert_array_equal(batch['visibility'][i], vis[spec.flip_index])
      np.testing.assert_allclose(batch['image'][i].astype(int), image[:, ::-1].astype(int), atol=1)
      seen['flipped'] += 1
  assert seen['plain'] > 0 and seen['flipped'] > 0, seen


@pytest.mark.parametrize('box, rotation, flip', [
    ([200, 100, 150, 300], 30.0, False),   # inside the image
    ([-100, -50, 200, 300], 0.0, True),    # over the top-left corner
    ([560, 380, 200, 200], 170.0, False),  # over the bottom-right corner
    ([560, 380, 200, 200], 0.0, False),    # the same, unrotated
    ([900, 900, 20, 20], 0.0, False),      # outside the image: all zeros
])
def test_training_reads_only_the_crops_window(box, rotation, flip):
  """The crop of the window equals the crop of the whole image, for a JPEG
  (decoded inside the window only), a PNG and a decoded (cached) image."""
  import cv2
  import tensorflow as tf
  from posejax import geometry
  rng = np.random.default_rng(0)
  # A photo-like image: smooth gradients plus texture.
  yy, xx = np.mgrid[:480, :640]
  image = np.stack([xx * 255 // 640, yy * 255 // 480, (xx + yy) % 256], -1)
  image = np.clip(image + rng.normal(0, 20, image.shape), 0, 255).astype(np.uint8)
  encoded = cv2.imencode('.jpg', image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
  center, scale = geometry.box_to_center_scale(np.asarray(box, np.float32), 0.75, 1.25)
  matrix = tf.constant(geometry.crop_matrix(center, scale, np.float32(rotation),
                                            (256, 192), np.bool_(flip)), tf.float32)
  decoded = tf.io.decode_jpeg(encoded, channels=3)
  whole = resample.warp_image(decoded, matrix, (256, 192)).numpy().astype(int)
  # cv2 writes BGR.
  png = tf.constant(cv2.imencode('.png', decoded.numpy()[..., ::-1])[1].tobytes())
  for source in (tf.constant(encoded), png, decoded):
    window, _ = resample.window(source, matrix, (256, 192))
    assert window.dtype == tf.uint8
    if box[0] < 640:  # the crop's window is smaller than the image
      assert window.shape[0] * window.shape[1] < 480 * 640
    # The XLA resampler on the window, against the TensorFlow warp of the image.
    windowed = resample.crop_window(source, matrix, (256, 192)).numpy().astype(int)
    diff = np.abs(whole - windowed)
    assert diff.max() <= 1  # bilinear weights rounded differently
    assert (diff > 0).mean() < 0.01
    if box[0] > 640:
      assert windowed.max() == 0


@pytest.mark.slow
def test_training_crops_ignore_xla_flags_meant_for_jax(smoke_builder, smoke_data_dir):
  """TensorFlow's XLA (which compiles the training crops) aborts on a flag it
  does not know; flags in $XLA_FLAGS are JAX's and do not reach it."""
  import os
  import subprocess
  import sys
  code = (
      'import os, recipe_configs\n'
      'from posejax import data\n'
      'from posejax.data import pipeline\n'
      'config = recipe_configs.load_config("synthetic", "smoke")\n'
      f'config.dataset.data_dir = {smoke_data_dir!r}\n'
      'builder = data.get_builder(config.dataset)\n'
      'batch = next(pipeline.train_dataset(builder, config).as_numpy_iterator())\n'
      'print(batch["image"].shape, os.environ["XLA_FLAGS"])\n')
  repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  env = dict(os.environ, XLA_FLAGS='--xla_flag_no_xla_knows=1',
             PYTHONPATH=os.pathsep.join([repo, os.path.join(repo, 'tests')]))
  proc = subprocess.run([sys.executable, '-c', code], env=env, cwd=repo,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  # A batch of crops, and the variable as it was (JAX reads it later).
  shape, flags = proc.stdout.strip().split(') ', 1)
  assert shape.startswith('(8, 64, 48, 3')
  assert flags.startswith('--xla_flag_no_xla_knows=1')


@pytest.mark.parametrize('pixels, rows', [
    (1, 4096), (4095, 4096), (4096, 6144), (6143, 6144), (6144, 8192),
    (192 * 256, 65536), (480 * 640, 393216),
    (2**24 - 1, 2**24), (2**24, 3 * 2**23),  # float32 would lose the + 1 here
])
def test_resampler_input_lengths_are_few_and_long_enough(pixels, rows):
  """Windows are padded to 2^k or 1.5 * 2^k rows, with a zero row past the
  pixels for the fill."""
  assert int(resample.bucket_rows(tf.constant(pixels))) == rows
