"""Per-dataset keypoint metadata: names, flip pairs, OKS sigmas, skeleton, colours.

This is the only place that knows what keypoint index means what. Everything else
(augmentation, flip test, metrics, drawing) asks a `KeypointSpec`.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class KeypointSpec:
  """Static description of one dataset's keypoints."""

  name: str
  keypoint_names: tuple[str, ...]
  # Pairs (left, right) that swap under a horizontal flip.
  flip_pairs: tuple[tuple[int, int], ...]
  # Edges drawn between keypoints, 0-based.
  skeleton: tuple[tuple[int, int], ...]
  # Per-keypoint OKS sigmas (COCO convention: kappa = 2 * sigma), or None.
  oks_sigmas: tuple[float, ...] | None = None
  # Keypoints of the upper body, for half-body augmentation; the rest is lower.
  upper_body_ids: tuple[int, ...] = ()

  @property
  def num_keypoints(self) -> int:
    return len(self.keypoint_names)

  @property
  def flip_index(self) -> np.ndarray:
    """Permutation p such that flipped[k] = original[p[k]]."""
    index = np.arange(self.num_keypoints)
    for a, b in self.flip_pairs:
      index[a], index[b] = b, a
    return index

  @property
  def lower_body_ids(self) -> tuple[int, ...]:
    upper = set(self.upper_body_ids)
    return tuple(k for k in range(self.num_keypoints) if k not in upper)

  def coco_category(self, category_id: int = 1, name: str = 'person') -> dict:
    """The entry of a COCO annotation file's `categories` for this layout."""
    return {'id': category_id, 'name': name, 'supercategory': name,
            'keypoints': list(self.keypoint_names),
            'skeleton': [[a + 1, b + 1] for a, b in self.skeleton]}  # 1-based

  def index(self, keypoint_name: str) -> int:
    return self.keypoint_names.index(keypoint_name)

  def colors(self) -> np.ndarray:
    """One BGR colour per keypoint: left side warm, right side cool, centre green.

    The side is any '_'-separated word of the name, so that both 'left_wrist'
    (COCO, MPII) and 'cuff_left_in' (FashionAI) are found.
    """
    colors = np.zeros((self.num_keypoints, 3), np.uint8)
    for k, name in enumerate(self.keypoint_names):
      words = name.split('_')
      if 'left' in words:
        colors[k] = (0, 128, 255)
      elif 'right' in words:
        colors[k] = (255, 128, 0)
      else:
        colors[k] = (0, 220, 0)
    return colors


# COCO 2017 person keypoints. Sigmas from the COCO keypoint evaluation
# (cocodataset.org/#keypoints-eval); skeleton from the COCO annotation file,
# converted to 0-based indices.
COCO = KeypointSpec(
    name='coco',
    keypoint_names=(
        'nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear',
        'left_shoulder', 'right_shoulder', 'left_elbow', 'right_elbow',
        'left_wrist', 'right_wrist', 'left_hip', 'right_hip',
        'left_knee', 'right_knee', 'left_ankle', 'right_ankle'),
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14),
                (15, 16)),
    skeleton=((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11),
              (6, 12), (5, 6), (5, 7), (6, 8), (7, 9), (8, 10), (1, 2), (0, 1),
              (0, 2), (1, 3), (2, 4), (3, 5), (4, 6)),
    oks_sigmas=(0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
                0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089),
    upper_body_ids=tuple(range(11)),
)



def _numbered(region: str, count: int) -> tuple[str, ...]:
  """'region_0', 'region_1', ...: names for points along one contour."""
  return tuple(f'{region}_{i}' for i in range(count))


def _chain(first: int, last: int, closed: bool = False) -> tuple[tuple[int, int], ...]:
  """Edges joining keypoints first..last (inclusive) in order, as drawn."""
  edges = tuple((k, k + 1) for k in range(first, last))
  return edges + ((last, first),) if closed else edges


# MPII Human Pose, in the joint order of the MPII annotations (and of the json
# conversion used by HRNet / SimpleBaselines). Upper body as in HRNet's MPII
# half-body augmentation. The PCKh head size comes from per-person head boxes
# (`head_box` in the records), not from keypoints.
MPII = KeypointSpec(
    name='mpii',
    keypoint_names=(
        'right_ankle', 'right_knee', 'right_hip', 'left_hip', 'left_knee',
        'left_ankle', 'pelvis', 'thorax', 'upper_neck', 'head_top',
        'right_wrist', 'right_elbow', 'right_shoulder', 'left_shoulder',
        'left_elbow', 'left_wrist'),
    flip_pairs=((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)),
    skeleton=((0, 1), (1, 2), (2, 6), (6, 3), (3, 4), (4, 5), (6, 7), (7, 8),
              (8, 9), (10, 11), (11, 12), (12, 7), (7, 13), (13, 14),
              (14, 15)),
    upper_body_ids=(7, 8, 9, 10, 11, 12, 13, 14, 15),
)


# FashionAI (Alibaba Tianchi, 2018): the 24 garment keypoints in the column
# order of the challenge csv files; the names are the csv header names. Each
# image shows one garment of one category, which labels only its own subset of
# the 24 points (FASHIONAI_CATEGORY_KEYPOINTS). 'left'/'right' are the
# garment's sides.
FASHIONAI = KeypointSpec(
    name='fashionai',
    keypoint_names=(
        'neckline_left', 'neckline_right', 'center_front', 'shoulder_left',
        'shoulder_right', 'armpit_left', 'armpit_right', 'waistline_left',
        'waistline_right', 'cuff_left_in', 'cuff_left_out', 'cuff_right_in',
        'cuff_right_out', 'top_hem_left', 'top_hem_right', 'waistband_left',
        'waistband_right', 'hemline_left', 'hemline_right', 'crotch',
        'bottom_left_in', 'bottom_left_out', 'bottom_right_in',
        'bottom_right_out'),
    flip_pairs=((0, 1), (3, 4), (5, 6), (7, 8), (9, 11), (10, 12), (13, 14),
                (15, 16), (17, 18), (20, 22), (21, 23)),
    # Garment outlines: collar, sleeves (shoulder -> cuff -> armpit), body
    # sides, hems; trousers waistband -> outer leg -> inner leg -> crotch.
    skeleton=((0, 1), (0, 2), (1, 2), (0, 3), (1, 4), (3, 10), (10, 9), (9, 5),
              (4, 12), (12, 11), (11, 6), (5, 7), (6, 8), (7, 13), (8, 14),
              (13, 14), (7, 17), (8, 18), (17, 18), (15, 16), (15, 17),
              (16, 18), (15, 21), (21, 20), (20, 19), (19, 22), (22, 23),
              (23, 16)),
)

FASHIONAI_CATEGORIES = ('blouse', 'outwear', 'trousers', 'skirt', 'dress')

# The keypoints each category labels, as published with the challenge data.
_FASHIONAI_SLEEVES = ('cuff_left_in', 'cuff_left_out', 'cuff_right_in',
                      'cuff_right_out')
_FASHIONAI_TOP = ('neckline_left', 'neckline_right', 'shoulder_left',
                  'shoulder_right', 'armpit_left', 'armpit_right')
_FASHIONAI_CATEGORY_NAMES = {
    'blouse': _FASHIONAI_TOP + ('center_front',) + _FASHIONAI_SLEEVES
              + ('top_hem_left', 'top_hem_right'),
    'outwear': _FASHIONAI_TOP + ('waistline_left', 'waistline_right')
               + _FASHIONAI_SLEEVES + ('top_hem_left', 'top_hem_right'),
    'trousers': ('waistband_left', 'waistband_right', 'crotch',
                 'bottom_left_in', 'bottom_left_out', 'bottom_right_in',
                 'bottom_right_out'),
    'skirt': ('waistband_left', 'waistband_right', 'hemline_left',
              'hemline_right'),
    'dress': _FASHIONAI_TOP + ('center_front', 'waistline_left',
                               'waistline_right') + _FASHIONAI_SLEEVES
             + ('hemline_left', 'hemline_right'),
}
# category -> sorted keypoint indices (13, 14, 7, 4 and 15 points).
FASHIONAI_CATEGORY_KEYPOINTS: dict[str, tuple[int, ...]] = {
    category: tuple(sorted(FASHIONAI.index(n) for n in names))
    for category, names in _FASHIONAI_CATEGORY_NAMES.items()
}
# The FashionAI normalised error divides by the armpit distance for tops and
# dresses and by the waistband width for trousers and skirts.
FASHIONAI_NORMALISER_PAIRS: dict[str, tuple[int, int]] = {
    category: ((FASHIONAI.index('waistband_left'),
                FASHIONAI.index('waistband_right'))
               if category in ('trousers', 'skirt') else
               (FASHIONAI.index('armpit_left'), FASHIONAI.index('armpit_right')))
    for category in FASHIONAI_CATEGORIES
}


# Kaggle "Facial Keypoints Detection": the 15 points in the column order of
# training.csv (each name there is followed by _x and _y). Left and right are
# the subject's, as in the competition's data description.
KAGGLE_FACES = KeypointSpec(
    name='kaggle_faces',
    keypoint_names=(
        'left_eye_center', 'right_eye_center', 'left_eye_inner_corner',
        'left_eye_outer_corner', 'right_eye_inner_corner',
        'right_eye_outer_corner', 'left_eyebrow_inner_end',
        'left_eyebrow_outer_end', 'right_eyebrow_inner_end',
        'right_eyebrow_outer_end', 'nose_tip', 'mouth_left_corner',
        'mouth_right_corner', 'mouth_center_top_lip',
        'mouth_center_bottom_lip'),
    flip_pairs=((0, 1), (2, 4), (3, 5), (6, 8), (7, 9), (11, 12)),
    skeleton=((3, 0), (0, 2), (5, 1), (1, 4), (6, 7), (8, 9), (11, 13),
              (13, 12), (12, 14), (14, 11)),
)


# iBUG 68-point markup (300W, 0-based): jaw 0-16, brows 17-21 and 22-26,
# nose bridge 27-30, nose base 31-35, eyes 36-41 and 42-47, outer lips 48-59,
# inner lips 60-67. Left and right are the subject's: points 36-41 are the eye
# on the image's left of a frontal face, the subject's right eye. The flip
# pairs are the mirror images of this markup (HRNet's 300W MATCHED_PARTS, made
# 0-based).
# NME on 300W is normalised by the inter-ocular distance: the outer eye
# corners, points 36 and 45.
IBUG_300W_OUTER_EYE_CORNERS = (36, 45)
IBUG_300W = KeypointSpec(
    name='ibug_300w',
    keypoint_names=(
        _numbered('jaw', 17) + _numbered('right_brow', 5)
        + _numbered('left_brow', 5) + _numbered('nose_bridge', 4)
        + _numbered('nose_base', 5) + _numbered('right_eye', 6)
        + _numbered('left_eye', 6) + _numbered('outer_lip', 12)
        + _numbered('inner_lip', 8)),
    flip_pairs=(
        # jaw
        (0, 16), (1, 15), (2, 14), (3, 13), (4, 12), (5, 11), (6, 10), (7, 9),
        # brows
        (17, 26), (18, 25), (19, 24), (20, 23), (21, 22),
        # nose base
        (31, 35), (32, 34),
        # eyes: outer corner, upper lid, inner corner, lower lid
        (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46),
        # outer lips
        (48, 54), (49, 53), (50, 52), (55, 59), (56, 58),
        # inner lips
        (60, 64), (61, 63), (65, 67)),
    skeleton=(_chain(0, 16) + _chain(17, 21) + _chain(22, 26) + _chain(27, 30)
              + _chain(31, 35) + ((30, 33),) + _chain(36, 41, closed=True)
              + _chain(42, 47, closed=True) + _chain(48, 59, closed=True)
              + _chain(60, 67, closed=True)),
)


# WFLW 98-point markup (0-based): jaw 0-32, brows 33-41 and 42-50 (upper edge
# from the outer end, then lower edge back), nose bridge 51-54, nose base
# 55-59, eyes 60-67 and 68-75 (8 points each), outer lips 76-87, inner lips
# 88-95, pupils 96 and 97. Left and right are the subject's, as for 300W. The
# flip pairs are the mirror images of this markup (HRNet's WFLW MATCHED_PARTS).
# NME on WFLW is normalised by the inter-ocular distance: the outer eye
# corners, points 60 and 72.
WFLW_OUTER_EYE_CORNERS = (60, 72)
# WFLW's six per-face attribute flags, in the order of its annotation files;
# its test subsets (NME per attribute) are the faces with a flag set.
WFLW_ATTRIBUTES = ('pose', 'expression', 'illumination', 'make_up', 'occlusion',
                   'blur')
WFLW = KeypointSpec(
    name='wflw',
    keypoint_names=(
        _numbered('jaw', 33) + _numbered('right_brow', 9)
        + _numbered('left_brow', 9) + _numbered('nose_bridge', 4)
        + _numbered('nose_base', 5) + _numbered('right_eye', 8)
        + _numbered('left_eye', 8) + _numbered('outer_lip', 12)
        + _numbered('inner_lip', 8) + ('right_pupil', 'left_pupil')),
    flip_pairs=(
        # jaw: 16 is the chin
        tuple((k, 32 - k) for k in range(16))
        # brows: upper edge outer -> inner, lower edge inner -> outer
        + ((33, 46), (34, 45), (35, 44), (36, 43), (37, 42),
           (38, 50), (39, 49), (40, 48), (41, 47))
        # nose base
        + ((55, 59), (56, 58))
        # eyes: outer corner, upper lid, inner corner, lower lid
        + ((60, 72), (61, 71), (62, 70), (63, 69), (64, 68),
           (65, 75), (66, 74), (67, 73))
        # outer and inner lips
        + ((76, 82), (77, 81), (78, 80), (83, 87), (84, 86),
           (88, 92), (89, 91), (93, 95))
        # pupils
        + ((96, 97),)),
    skeleton=(_chain(0, 32) + _chain(33, 41, closed=True)
              + _chain(42, 50, closed=True) + _chain(51, 54) + _chain(55, 59)
              + ((54, 57),) + _chain(60, 67, closed=True)
              + _chain(68, 75, closed=True) + _chain(76, 87, closed=True)
              + _chain(88, 95, closed=True)),
)


DATASETS: dict[str, KeypointSpec] = {
    spec.name: spec
    for spec in (COCO, MPII, FASHIONAI, KAGGLE_FACES, IBUG_300W, WFLW)
}


def get_spec(name: str) -> KeypointSpec:
  if name not in DATASETS:
    raise ValueError(
        f'Unknown keypoint layout {name!r}; known: {sorted(DATASETS)}. '
        'Add it to posejax/keypoints.py.')
  return DATASETS[name]
