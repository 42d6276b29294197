"""The crop geometry is one definition, in numpy and in TensorFlow alike."""

import numpy as np
import pytest

from posejax import geometry
from posejax import sharding


@pytest.mark.parametrize('rotation, flip', [(0.0, False), (30.0, False), (-50.0, True)])
def test_numpy_and_tensorflow_build_the_same_crop(rotation, flip):
  import tensorflow as tf
  box = np.array([12.0, 30.0, 50.0, 90.0], np.float32)
  center, scale = geometry.box_to_center_scale(box, 0.75, 1.25)
  tf_center, tf_scale = geometry.box_to_center_scale(tf.constant(box), 0.75, 1.25, xp=tf)
  np.testing.assert_allclose(center, tf_center.numpy(), rtol=1e-6)
  np.testing.assert_allclose(scale, tf_scale.numpy(), rtol=1e-6)
  matrix = geometry.crop_matrix(center, scale, np.float32(rotation), (128, 96), flip)
  tf_matrix = geometry.crop_matrix(tf_center, tf_scale, tf.constant(rotation), (128, 96),
                                   tf.constant(flip), xp=tf)
  np.testing.assert_allclose(matrix, tf_matrix.numpy(), rtol=1e-5, atol=1e-4)


def test_crop_fills_the_input_and_input_to_image_inverts_it():
  center = np.array([40.0, 70.0], np.float32)
  scale = np.array([60.0, 80.0], np.float32)
  matrix = geometry.crop_matrix(center, scale, np.float32(0.0), (128, 96))
  # The crop's edges land on the input's pixel edges.
  corners = np.array([[10.0, 30.0, 1.0], [70.0, 110.0, 1.0]])
  np.testing.assert_allclose((corners @ matrix.T)[:, :2], [[-0.5, -0.5], [95.5, 127.5]],
                             atol=1e-4)
  rng = np.random.default_rng(0)
  points = rng.uniform(0, 150, (3, 17, 2)).astype(np.float32)
  moved = points @ matrix[:2, :2].T + matrix[:2, 2]
  back = geometry.input_to_image(moved, np.tile(center, (3, 1)),
                                 np.tile(scale, (3, 1)), (128, 96))
  np.testing.assert_allclose(back, points, atol=1e-3)


def test_box_grows_its_short_side_to_the_input_aspect():
  center, scale = geometry.box_to_center_scale(
      np.array([0.0, 0.0, 30.0, 100.0], np.float32), 0.75, 1.0)
  np.testing.assert_allclose(center, [15.0, 50.0])
  np.testing.assert_allclose(scale, [75.0, 100.0])
  _, scale = geometry.box_to_center_scale(
      np.array([0.0, 0.0, 90.0, 40.0], np.float32), 0.75, 1.25)
  np.testing.assert_allclose(scale, [112.5, 150.0])


def test_pad_batch_repeats_the_last_row_and_masks_it():
  batch = {'image': np.arange(3 * 2).reshape(3, 2), 'id': np.array([5, 6, 7])}
  padded, valid = sharding.pad_batch(batch, 5)
  assert valid.tolist() == [True, True, True, False, False]
  assert padded['id'].tolist() == [5, 6, 7, 7, 7]
  assert padded['image'].shape == (5, 2)
  full, valid = sharding.pad_batch(batch, 3)
  assert valid.all() and full['id'].tolist() == [5, 6, 7]
  with pytest.raises(ValueError, match='does not fit'):
    sharding.pad_batch(batch, 2)


def test_udp_crop_puts_the_box_edges_on_the_outer_pixel_centres():
  center = np.array([40.0, 70.0], np.float32)
  scale = np.array([60.0, 80.0], np.float32)
  matrix = geometry.crop_matrix(center, scale, np.float32(0.0), (128, 96), crop='udp')
  corners = np.array([[10.0, 30.0, 1.0], [70.0, 110.0, 1.0], [40.0, 70.0, 1.0]])
  np.testing.assert_allclose((corners @ matrix.T)[:, :2],
                             [[0, 0], [95, 127], [47.5, 63.5]], atol=1e-4)
  rng = np.random.default_rng(0)
  points = rng.uniform(0, 150, (3, 17, 2)).astype(np.float32)
  moved = points @ matrix[:2, :2].T + matrix[:2, 2]
  back = geometry.input_to_image(moved, np.tile(center, (3, 1)),
                                 np.tile(scale, (3, 1)), (128, 96), crop='udp')
  np.testing.assert_allclose(back, points, atol=1e-3)
  # Mirrored, the crop is the array mirrored (x -> W - 1 - x), as centred.
  flipped = geometry.crop_matrix(center, scale, np.float32(0.0), (128, 96), True,
                                 crop='udp')
  np.testing.assert_allclose((corners @ flipped.T)[:, 0], 95 - (corners @ matrix.T)[:, 0],
                             atol=1e-4)
