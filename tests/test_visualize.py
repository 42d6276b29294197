"""Tests for posejax.visualize."""

import cv2
import numpy as np
import pytest

from posejax import keypoints as kp_lib
from posejax import visualize

SPEC = kp_lib.COCO
K = SPEC.num_keypoints


def _pose():
  """Keypoints parked at (5, 5) except left shoulder, left elbow, right hip."""
  xy = np.full((K, 2), 5.0)
  scores = np.zeros(K)
  shoulder, elbow, hip = (SPEC.index(n) for n in
                          ('left_shoulder', 'left_elbow', 'right_hip'))
  xy[shoulder], scores[shoulder] = (40.0, 30.0), 0.9
  xy[elbow], scores[elbow] = (40.0, 70.0), 0.8
  xy[hip], scores[hip] = (90.0, 60.0), 0.1  # below threshold
  return xy, scores, shoulder, elbow, hip


def test_draw_pose_draws_confident_joints_and_limbs_only():
  image = np.full((100, 120, 3), 40, np.uint8)
  xy, scores, shoulder, elbow, hip = _pose()
  assert (shoulder, elbow) in SPEC.skeleton
  out = visualize.draw_pose(image, xy, scores, SPEC, threshold=0.3)
  assert out.shape == image.shape and out.dtype == np.uint8
  assert (image == 40).all()  # input untouched
  # Joint centre in the spec's colour, read as RGB (spec.colors() is BGR).
  np.testing.assert_array_equal(out[30, 40], SPEC.colors()[shoulder][::-1])
  np.testing.assert_array_equal(out[70, 40], SPEC.colors()[elbow][::-1])
  assert (out[50, 40] != 40).any()        # limb between them
  np.testing.assert_array_equal(out[60, 90], image[60, 90])  # hip: 0.1 < 0.3
  np.testing.assert_array_equal(out[5, 5], image[5, 5])      # score 0
  np.testing.assert_array_equal(out[-1, -1], image[-1, -1])  # far corner
  # Nothing above threshold: image unchanged.
  quiet = visualize.draw_pose(image, xy, scores, SPEC, threshold=0.95)
  np.testing.assert_array_equal(quiet, image)
  # Batched input draws the same.
  batched = visualize.draw_pose(image, xy[None], scores[None], SPEC)
  np.testing.assert_array_equal(batched, out)


@pytest.mark.parametrize('x, y', [(30.0, 20.0), (30.5, 20.25), (31.75, 19.5)])
def test_draw_pose_is_sub_pixel_accurate(x, y):
  image = np.zeros((48, 64, 3), np.uint8)
  xy = np.full((K, 2), np.nan)
  scores = np.zeros(K)
  j = SPEC.index('nose')
  xy[j], scores[j] = (x, y), 1.0
  out = visualize.draw_pose(image, xy, scores, SPEC, radius=4.0)
  weight = out.astype(np.float64).sum(-1)
  rows, cols = np.mgrid[:48, :64]
  centroid = (np.sum(weight * cols) / weight.sum(),
              np.sum(weight * rows) / weight.sum())
  np.testing.assert_allclose(centroid, (x, y), atol=0.1)


def test_image_grid_shape_and_layout():
  images = [np.full((10, 12, 3), 10 * (i + 1), np.uint8) for i in range(5)]
  grid = visualize.image_grid(images, columns=3, pad=2, pad_value=255)
  assert grid.shape == (2 * (10 + 2) + 2, 3 * (12 + 2) + 2, 3)
  for i in range(5):
    r, c = divmod(i, 3)
    y, x = 2 + r * 12, 2 + c * 14
    assert (grid[y:y + 10, x:x + 12] == 10 * (i + 1)).all()
  assert (grid[:2] == 255).all() and (grid[:, :2] == 255).all()
  assert (grid[14:24, 30:42] == 255).all()  # the empty sixth cell
  # Fewer images than columns: one row, as wide as needed.
  assert visualize.image_grid(images[:2], columns=4, pad=0).shape == (10, 24, 3)


def test_image_grid_resizes_to_first():
  small = np.full((10, 12, 3), 7, np.uint8)
  big = np.full((20, 24, 3), 200, np.uint8)
  grid = visualize.image_grid([small, big], columns=2, pad=1)
  assert grid.shape == (12, 27, 3)
  assert (grid[1:11, 14:26] == 200).all()


def test_save_png_round_trip_keeps_colour_order(tmp_path):
  image = np.zeros((6, 8, 3), np.uint8)
  image[..., 0] = 255          # red in RGB
  image[0, 0] = (0, 0, 255)    # one blue pixel
  path = tmp_path / 'nested' / 'dir' / 'red.png'
  visualize.save_png(path, image)
  read = cv2.imread(str(path), cv2.IMREAD_COLOR)
  assert read is not None
  np.testing.assert_array_equal(read[1, 1], (0, 0, 255))  # BGR: red
  np.testing.assert_array_equal(read[..., ::-1], image)


def test_stage_panel_shows_the_crop_then_each_stage():
  from posejax import keypoints
  crop = np.full((64, 48, 3), 100, np.uint8)
  maps = np.zeros((3, 16, 12), np.float32)
  maps[:, 8, 6] = [0.2, 0.6, 1.0]  # a peak that sharpens stage by stage
  kps = np.tile([[24.0, 32.0]], (17, 1))
  panel = visualize.stage_panel(crop, maps, kps, np.ones(17), keypoints.COCO)
  # Enlarged to 192 high (x3), four cells side by side, 2-pixel gaps.
  assert panel.shape == (192 + 4, 4 * (144 + 2) + 2, 3)
  cells = [panel[2:194, 2 + i * 146:146 + i * 146] for i in range(4)]
  # The heatmap pixel (8, 6) covers the enlarged pixels around (101.5, 77.5):
  # each stage's cell shows its own peak value there (jet over the crop), and
  # far from it the colour of 0.
  peak = [tuple(c[101, 77]) for c in cells[1:]]
  assert len(set(peak)) == 3
  zero = tuple(visualize.heatmap_overlay(crop[:1, :1], np.zeros((1, 1)))[0, 0])
  assert all(tuple(c[10, 10]) == zero for c in cells[1:])
  assert tuple(cells[0][10, 10]) == (100, 100, 100)  # the crop itself
