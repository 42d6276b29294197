"""Keypoint specs: flips are mirror symmetries of each markup, names agree."""

import re

import numpy as np
import pytest

from posejax import keypoints as keypoints_lib

SPECS = sorted(keypoints_lib.DATASETS.values(), key=lambda s: s.name)
IDS = [s.name for s in SPECS]


def _side_swapped(name):
  words = name.split('_')
  swap = {'left': 'right', 'right': 'left'}
  return '_'.join(swap.get(w, w) for w in words)


def _region(name):
  """'right_eye_3' -> 'right_eye': the contour a numbered point belongs to."""
  return re.sub(r'_\d+$', '', name)


def test_every_published_layout_is_registered():
  assert set(keypoints_lib.DATASETS) == {
      'coco', 'mpii', 'fashionai', 'kaggle_faces', 'wflw', 'ibug_300w'}
  counts = {s.name: s.num_keypoints for s in SPECS}
  assert counts == {'coco': 17, 'mpii': 16, 'fashionai': 24, 'kaggle_faces': 15,
                    'wflw': 98, 'ibug_300w': 68}
  for spec in SPECS:
    assert keypoints_lib.get_spec(spec.name) is spec
    assert len(set(spec.keypoint_names)) == spec.num_keypoints
    assert spec.oks_sigmas is None or len(spec.oks_sigmas) == spec.num_keypoints
  with pytest.raises(ValueError, match='mpi2'):
    keypoints_lib.get_spec('mpi2')


@pytest.mark.parametrize('spec', SPECS, ids=IDS)
def test_flip_index_is_an_involution_from_disjoint_pairs(spec):
  used = [k for pair in spec.flip_pairs for k in pair]
  assert len(used) == len(set(used)), 'a keypoint is in two flip pairs'
  assert all(0 <= k < spec.num_keypoints for k in used)
  flip = spec.flip_index
  assert sorted(flip) == list(range(spec.num_keypoints))
  np.testing.assert_array_equal(flip[flip], np.arange(spec.num_keypoints))


@pytest.mark.parametrize('spec', SPECS, ids=IDS)
def test_flip_maps_the_skeleton_onto_itself(spec):
  """A mirror preserves which points are joined: each contour maps onto its twin.

  Contours are drawn in markup order, so a pair list that is off by one or
  runs the wrong way round a contour breaks an edge.
  """
  edges = {frozenset(e) for e in spec.skeleton}
  assert all(0 <= k < spec.num_keypoints for e in spec.skeleton for k in e)
  flip = spec.flip_index
  mirrored = {frozenset((int(flip[a]), int(flip[b]))) for a, b in spec.skeleton}
  assert mirrored == edges


@pytest.mark.parametrize('spec', SPECS, ids=IDS)
def test_flip_pairs_join_left_and_right_twins(spec):
  names = spec.keypoint_names
  flip = spec.flip_index
  for k, name in enumerate(names):
    partner = names[flip[k]]
    assert _region(partner) == _side_swapped(_region(name)), (name, partner)
    if {'left', 'right'} & set(name.split('_')):
      assert flip[k] != k, f'{name} has a side but no twin'


@pytest.mark.parametrize('spec, centre_line', [
    (keypoints_lib.IBUG_300W, {8, 27, 28, 29, 30, 33, 51, 57, 62, 66}),
    (keypoints_lib.WFLW, {16, 51, 52, 53, 54, 57, 79, 85, 90, 94}),
    (keypoints_lib.MPII, {6, 7, 8, 9}),
    (keypoints_lib.FASHIONAI, {2, 19}),
    (keypoints_lib.KAGGLE_FACES, {10, 13, 14}),
], ids=['ibug_300w', 'wflw', 'mpii', 'fashionai', 'kaggle_faces'])
def test_only_centre_line_points_map_to_themselves(spec, centre_line):
  fixed = set(np.flatnonzero(spec.flip_index == np.arange(spec.num_keypoints)).tolist())
  assert fixed == centre_line


def test_nme_eye_corners_are_outer_corners_that_swap():
  for spec, corners in ((keypoints_lib.IBUG_300W, keypoints_lib.IBUG_300W_OUTER_EYE_CORNERS),
                        (keypoints_lib.WFLW, keypoints_lib.WFLW_OUTER_EYE_CORNERS)):
    a, b = corners
    assert spec.flip_index[a] == b
    assert _region(spec.keypoint_names[a]) == 'right_eye'
    assert _region(spec.keypoint_names[b]) == 'left_eye'
  assert keypoints_lib.IBUG_300W_OUTER_EYE_CORNERS == (36, 45)
  assert keypoints_lib.WFLW_OUTER_EYE_CORNERS == (60, 72)
  # The first point of each eye contour is its outer corner (36 and 60), the
  # fourth / fifth its inner corner, and inner corners swap with each other.
  assert keypoints_lib.IBUG_300W.flip_index[39] == 42
  assert keypoints_lib.WFLW.flip_index[64] == 68


def test_fashionai_categories_label_both_sides_of_a_garment():
  spec = keypoints_lib.FASHIONAI
  assert spec.keypoint_names[:3] == ('neckline_left', 'neckline_right', 'center_front')
  assert spec.keypoint_names[-1] == 'bottom_right_out'
  for category, ids in keypoints_lib.FASHIONAI_CATEGORY_KEYPOINTS.items():
    assert list(ids) == sorted(set(ids))
    assert set(spec.flip_index[list(ids)]) == set(ids), category
    a, b = keypoints_lib.FASHIONAI_NORMALISER_PAIRS[category]
    assert {a, b} <= set(ids) and spec.flip_index[a] == b


def test_mpii_order_and_half_body():
  spec = keypoints_lib.MPII
  assert spec.keypoint_names[0] == 'right_ankle' and spec.keypoint_names[9] == 'head_top'
  assert spec.keypoint_names[15] == 'left_wrist'
  assert spec.lower_body_ids == (0, 1, 2, 3, 4, 5, 6)


def test_colours_find_the_side_anywhere_in_the_name():
  coco = keypoints_lib.COCO.colors()
  np.testing.assert_array_equal(coco[0], (0, 220, 0))      # nose
  np.testing.assert_array_equal(coco[1], (0, 128, 255))    # left_eye
  np.testing.assert_array_equal(coco[2], (255, 128, 0))    # right_eye
  fashion = keypoints_lib.FASHIONAI.colors()
  spec = keypoints_lib.FASHIONAI
  np.testing.assert_array_equal(fashion[spec.index('cuff_left_in')], (0, 128, 255))
  np.testing.assert_array_equal(fashion[spec.index('bottom_right_out')], (255, 128, 0))
  np.testing.assert_array_equal(fashion[spec.index('crotch')], (0, 220, 0))
