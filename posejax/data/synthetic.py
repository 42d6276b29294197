"""Synthetic COCO person keypoints: articulated figures on cluttered backgrounds.

Writes the exact COCO 2017 person-keypoint layout (`<root>/<split>/*.jpg` and
`<root>/annotations/person_keypoints_<split>.json`), so the whole data path
(builder, pipeline, training, COCO evaluation) runs with no download.

Each image holds 1-3 figures: a body model (head, neck, torso, limbs, hands,
feet) with the 17 COCO keypoints at its joint centres and on its face, at
varied scale, position, in-plane rotation and limb angles, on a textured
background with distractor shapes (some limb-like), sometimes behind an
occluder or partly out of the frame.

Left and right are learnable only from the figure's own cues, as in real
photos: left and right limbs share their colours, and a figure is front-facing
(face drawn, its anatomical left on the image right) or back-facing (hair
only, its anatomical left on the image left, nose and eyes not labelled) with
probability 1/2 each.

Conventions:
  * Keypoints are 0-based pixels, the centre of the top-left pixel is (0, 0),
    which is also cv2's drawing convention; every joint is drawn with
    `shift=4` at exactly its annotated (x, y), a multiple of 1/16.
  * Visibility: 2 visible; 1 inside the frame but covered by an occluder or a
    later-drawn figure (computed from masks); 0 outside the frame, or nose and
    eyes of a back-facing figure. v=0 keypoints are written as 0, 0, 0.
  * bbox is the tight box of the figure's silhouette pixels inside the image,
    in the pycocotools `mask.toBbox` convention: [x0, y0, x1 - x0 + 1,
    y1 - y0 + 1] for the first/last silhouette columns x0, x1 (rows alike).
    area is the silhouette's pixel count inside the image. Occluders are not
    subtracted from either.

Everything is deterministic: an image's content depends only on
(seed, split, image index) through `np.random.SeedSequence`.
"""

from __future__ import annotations

import colorsys
import json
import math
import os
import shutil
import tempfile
import zlib

import cv2
import numpy as np

from posejax import keypoints

_SPEC = keypoints.COCO
_NUM_KP = _SPEC.num_keypoints

# Sub-pixel drawing: cv2 coordinates are integers in units of 1/2**_SHIFT px.
_SHIFT = 4
_SUB = 1 << _SHIFT

# Bumped whenever the generated content changes, so `ensure_synthetic_coco`
# regenerates data made by an older generator.
_GENERATOR_VERSION = 1
_MARKER = 'GENERATED.json'

# Figures per image: 1, 2 or 3.
_FIGURE_COUNT_PROBS = (0.4, 0.35, 0.25)
# Figure standing height as a fraction of the image height (log-uniform).
_MIN_HEIGHT_FRAC, _MAX_HEIGHT_FRAC = 0.25, 0.9
_ROTATION_SD_DEG, _ROTATION_MAX_DEG = 30.0, 90.0
_P_PARTLY_OUTSIDE = 0.15
_P_OCCLUDER = 0.3
_P_BACK_FACING = 0.5
# A new figure may cover at most this fraction of an earlier one (or of
# itself), so overlaps stay "a bit".
_MAX_OVERLAP = 0.25
_PLACEMENT_TRIES = 8
# Written figures must have this many labelled keypoints and bbox sides.
_MIN_KEYPOINTS = 3
_MIN_BOX_SIDE = 8
_JPEG_QUALITY = 90

# Body proportions in units of standing height, origin at mid-height, y down.
_SHOULDER_Y = 0.175 - 0.5
_HIP_Y = 0.48 - 0.5
_HEAD_R = 0.065
_SHOULDER_HALF = 0.11
_HIP_HALF = 0.075
_UPPER_ARM, _FOREARM = 0.165, 0.145
_THIGH, _SHIN = 0.24, 0.235
_MIN_LIMB_PX = 3  # thinner limbs would not cover their own joint pixels

# Palettes (RGB). Hair is picked darker than the skin so that a back-facing
# head never looks like a face.
_SKIN_RGB = ((255, 224, 196), (241, 194, 167), (224, 172, 105),
             (198, 134, 66), (141, 85, 36), (92, 58, 40))
_HAIR_RGB = ((15, 12, 10), (45, 30, 20), (80, 50, 28), (120, 75, 35),
             (170, 135, 80), (95, 90, 85))


def _kp(name: str) -> int:
  return _SPEC.index(name)


def _luma(rgb) -> float:
  return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def _bgr(rgb) -> tuple[int, int, int]:
  r, g, b = (int(np.clip(round(float(c)), 0, 255)) for c in rgb)
  return (b, g, r)


def _jitter(rng: np.random.Generator, rgb, amount: float):
  return np.clip(np.asarray(rgb, np.float64) + rng.uniform(-amount, amount, 3),
                 0, 255)


def _random_rgb(rng: np.random.Generator, s_range=(0.15, 1.0),
                v_range=(0.2, 0.95)):
  h = rng.uniform()
  s = rng.uniform(*s_range)
  v = rng.uniform(*v_range)
  return np.array(colorsys.hsv_to_rgb(h, s, v)) * 255


def _shade(rgb, factor: float):
  return np.clip(np.asarray(rgb, np.float64) * factor, 0, 255)


def _direction(angle_deg: float, side: int) -> np.ndarray:
  """Unit vector: 0 deg points down, positive turns outwards towards `side`."""
  a = math.radians(angle_deg)
  return np.array([side * math.sin(a), math.cos(a)])


def _rotate(v: np.ndarray, angle_deg: float) -> np.ndarray:
  a = math.radians(angle_deg)
  c, s = math.cos(a), math.sin(a)
  return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


# ----------------------------------------------------------------------------
# Body model.
#
# A figure is a list of primitives in local units (standing height = 1), each
# `(kind, geometry, bgr, in_mask)` with kind one of
#   'line'    geometry = (p0, p1, thickness)   thick line, round ends
#   'circle'  geometry = (centre, radius)      filled disc
#   'poly'    geometry = (points,)             filled polygon
#   'outline' geometry = (points, thickness)   closed polyline
# drawn in order. `in_mask` is False for details inside other primitives
# (face features), which need no mask drawing.


def _sample_figure(rng: np.random.Generator) -> dict:
  """Samples pose, proportions, facing and colours of one figure.

  Returns:
    dict with 'keypoints' (17, 2) local coordinates, 'labelled' (17,) bool,
    'back_facing' bool and 'prims' (the drawing list).
  """
  back_facing = bool(rng.uniform() < _P_BACK_FACING)
  # Image side (-1 left, +1 right, before rotation) of the anatomical left.
  left_side = -1 if back_facing else 1

  # Proportions, +-15%.
  p = lambda: rng.uniform(0.85, 1.15)
  torso_scale = rng.uniform(0.9, 1.1)
  shoulder_half = _SHOULDER_HALF * p()
  hip_half = _HIP_HALF * p()
  arm_scale, leg_scale = p(), p()
  head_r = _HEAD_R * rng.uniform(0.9, 1.1)
  thick = rng.uniform(0.8, 1.2)
  upper_arm_t, forearm_t = 0.07 * thick, 0.06 * thick
  thigh_t, shin_t = 0.09 * thick, 0.075 * thick

  # Torso: shoulder and hip lines may tilt, the hips may shift sideways.
  hip_c = np.array([rng.normal(0, 0.02), _HIP_Y])
  shoulder_c = hip_c + np.array([rng.normal(0, 0.02),
                                 (_SHOULDER_Y - _HIP_Y) * torso_scale])
  shoulder_axis = _rotate(np.array([1.0, 0.0]), rng.normal(0, 5))
  hip_axis = _rotate(np.array([1.0, 0.0]), rng.normal(0, 5))
  shoulder = {s: shoulder_c + s * shoulder_half * shoulder_axis for s in (-1, 1)}
  hip = {s: hip_c + s * hip_half * hip_axis for s in (-1, 1)}

  def foreshortened(length):
    # Mimics limbs pointing partly towards or away from the camera.
    return length * (rng.uniform(0.75, 1.0) if rng.uniform() < 0.3 else 1.0)

  elbow, wrist, knee, ankle = {}, {}, {}, {}
  forearm_dir, shin_dir = {}, {}
  for s in (-1, 1):
    upper = rng.uniform(-25, 175)  # across the body .. straight overhead
    bend = rng.uniform(0, 150) * rng.choice((-1, 1))
    elbow[s] = shoulder[s] + foreshortened(_UPPER_ARM * arm_scale) * _direction(
        upper, s)
    forearm_dir[s] = _direction(upper + bend, s)
    wrist[s] = elbow[s] + foreshortened(_FOREARM * arm_scale) * forearm_dir[s]

    if rng.uniform() < 0.15:
      thigh = rng.uniform(40, 100)  # raised leg
    else:
      thigh = rng.uniform(-12, 35)  # together .. apart
    knee_bend = rng.uniform(0, 120) if rng.uniform() < 0.5 else rng.uniform(0, 25)
    knee[s] = hip[s] + foreshortened(_THIGH * leg_scale) * _direction(thigh, s)
    shin_dir[s] = _direction(thigh - knee_bend * rng.choice((-1, 1)), s)
    ankle[s] = knee[s] + foreshortened(_SHIN * leg_scale) * shin_dir[s]

  # Head frame: u points to the image right of the head, v down its face.
  head_tilt = rng.normal(0, 12)
  v = _rotate(np.array([0.0, 1.0]), head_tilt)
  u = np.array([v[1], -v[0]])
  neck_len = (_SHOULDER_Y + 0.5 - _HEAD_R) * torso_scale
  head_c = shoulder_c - neck_len * v
  at = lambda a, b: head_c + head_r * (a * u + b * v)
  yaw = rng.uniform(-0.3, 0.3)  # face turned slightly left or right

  kps = np.zeros((_NUM_KP, 2))
  labelled = np.ones(_NUM_KP, bool)
  side_name = {left_side: 'left', -left_side: 'right'}
  for s in (-1, 1):
    n = side_name[s]
    kps[_kp(f'{n}_shoulder')] = shoulder[s]
    kps[_kp(f'{n}_elbow')] = elbow[s]
    kps[_kp(f'{n}_wrist')] = wrist[s]
    kps[_kp(f'{n}_hip')] = hip[s]
    kps[_kp(f'{n}_knee')] = knee[s]
    kps[_kp(f'{n}_ankle')] = ankle[s]
    kps[_kp(f'{n}_ear')] = at(s * 0.9, 0.05)
    kps[_kp(f'{n}_eye')] = at(s * 0.36 + yaw, -0.02)
  kps[_kp('nose')] = at(1.3 * yaw, 0.32)
  if back_facing:
    # As COCO annotators do for people seen from behind.
    for name in ('nose', 'left_eye', 'right_eye'):
      labelled[_kp(name)] = False

  # Colours: left and right share every colour, so colour never tells side.
  skin = _jitter(rng, _SKIN_RGB[rng.integers(len(_SKIN_RGB))], 12)
  darker_hair = [h for h in _HAIR_RGB if _luma(h) < 0.7 * _luma(skin)]
  hair = _jitter(rng, darker_hair[rng.integers(len(darker_hair))] if darker_hair
                 else _HAIR_RGB[0], 10)
  top = _random_rgb(rng)
  sleeve = _shade(top, rng.uniform(0.8, 1.2))  # arms stand out on the torso
  bottom = _random_rgb(rng, v_range=(0.15, 0.8))
  shoe = _random_rgb(rng, s_range=(0.0, 0.6), v_range=(0.05, 0.5))
  forearm_rgb = skin if rng.uniform() < 0.4 else sleeve  # short sleeves
  shin_rgb = skin if rng.uniform() < 0.25 else bottom  # shorts
  edge = 0.012  # outline width each side, local units

  prims = []

  def limbs(chains, fill_after_outline=True):
    # Outline both segments first so that no outline crosses the joint.
    for p0, p1, t, rgb in chains:
      prims.append(('line', (p0, p1, t + 2 * edge), _bgr(_shade(rgb, 0.55)),
                    True))
    if fill_after_outline:
      for p0, p1, t, rgb in chains:
        prims.append(('line', (p0, p1, t), _bgr(rgb), True))

  # Back to front: legs, torso, arms, neck, head.
  for s in (-1, 1):
    foot_dir = _rotate(shin_dir[s], s * rng.uniform(40, 80))
    prims.append(('line', (ankle[s], ankle[s] + 0.045 * foot_dir, 0.05 * thick),
                  _bgr(shoe), True))
    limbs([(hip[s], knee[s], thigh_t, bottom),
           (knee[s], ankle[s], shin_t, shin_rgb)])

  torso = np.array([
      shoulder[-1] - 0.035 * shoulder_axis - 0.01 * v,
      shoulder[1] + 0.035 * shoulder_axis - 0.01 * v,
      0.35 * shoulder[1] + 0.65 * hip[1] + 0.01 * shoulder_axis,
      hip[1] + 0.045 * hip_axis,
      hip[-1] - 0.045 * hip_axis,
      0.35 * shoulder[-1] + 0.65 * hip[-1] - 0.01 * shoulder_axis,
  ])
  prims.append(('poly', (torso,), _bgr(top), True))
  prims.append(('outline', (torso, edge), _bgr(_shade(top, 0.55)), True))

  for s in (-1, 1):
    limbs([(shoulder[s], elbow[s], upper_arm_t, sleeve),
           (elbow[s], wrist[s], forearm_t, forearm_rgb)])
    prims.append(('circle', (wrist[s] + 0.025 * forearm_dir[s], 0.03),
                  _bgr(skin), True))

  prims.append(('line', (shoulder_c, head_c, 0.05), _bgr(_shade(skin, 0.85)),
                True))
  for s in (-1, 1):
    prims.append(('circle', (at(s * 0.93, 0.08), 0.3 * head_r),
                  _bgr(_shade(skin, 0.9)), True))
  prims.append(('circle', (head_c, head_r), _bgr(hair), True))
  if back_facing:
    # Back of the head: hair with a lighter crown and a darker nape.
    prims.append(('circle', (at(0.15 * yaw, -0.35), 0.35 * head_r),
                  _bgr(_shade(hair, 1.25)), False))
    prims.append(('line', (at(-0.5, 0.75), at(0.5, 0.75), 0.2 * head_r),
                  _bgr(_shade(hair, 0.7)), False))
  else:
    # Face: skin below a hairline, eyes (white and pupil), nose, mouth.
    prims.append(('circle', (at(0.45 * yaw, 0.14), 0.86 * head_r), _bgr(skin),
                  False))
    for s in (-1, 1):
      eye = kps[_kp(f'{side_name[s]}_eye')]
      prims.append(('circle', (eye, 0.17 * head_r), (235, 235, 235), False))
      prims.append(('circle', (eye + 0.04 * head_r * yaw * u, 0.09 * head_r),
                    (30, 25, 20), False))
    prims.append(('circle', (kps[_kp('nose')], 0.1 * head_r),
                  _bgr(_shade(skin, 0.7)), False))
    prims.append(('line', (at(yaw - 0.25, 0.58), at(yaw + 0.25, 0.58),
                           0.08 * head_r), (40, 40, 150), False))
  return dict(keypoints=kps, labelled=labelled, back_facing=back_facing,
              prims=prims)


# ----------------------------------------------------------------------------
# Drawing.


def _to_sub(points: np.ndarray) -> np.ndarray:
  return np.round(np.asarray(points) * _SUB).astype(np.int32)


def _draw_prims(canvas: np.ndarray, mask: np.ndarray | None, prims,
                origin: np.ndarray, scale: float, rotation_deg: float,
                centre: np.ndarray):
  """Draws local-unit primitives at `centre` (image px), `scale` px per unit.

  `origin` is the integer image position of canvas[0, 0]; all coordinates are
  quantised to 1/16 px exactly as `_place` quantises the keypoints.
  """
  a = math.radians(rotation_deg)
  rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
  offset = centre - origin

  def pt(p):
    return _quantise(offset + scale * (rot @ np.asarray(p, np.float64)))

  def px(length, minimum=1):
    return max(minimum, int(round(length * scale)))

  aa = cv2.LINE_AA
  for kind, geom, color, in_mask in prims:
    targets = [(canvas, color)]
    if mask is not None and in_mask:
      targets.append((mask, 255))
    if kind == 'line':
      p0, p1, t = geom
      q0, q1 = _to_sub(pt(p0)), _to_sub(pt(p1))
      minimum = _MIN_LIMB_PX if t > 0.03 else 1
      for img, c in targets:
        cv2.line(img, tuple(q0), tuple(q1), c, px(t, minimum), aa, _SHIFT)
    elif kind == 'circle':
      c0, r = geom
      q = _to_sub(pt(c0))
      rad = max(int(round(r * scale * _SUB)), _SUB // 2)
      for img, c in targets:
        cv2.circle(img, tuple(q), rad, c, -1, aa, _SHIFT)
    elif kind == 'poly':
      q = _to_sub(np.stack([pt(p) for p in geom[0]]))
      for img, c in targets:
        cv2.fillPoly(img, [q], c, aa, _SHIFT)
    elif kind == 'outline':
      points, t = geom
      q = _to_sub(np.stack([pt(p) for p in points]))
      for img, c in targets:
        cv2.polylines(img, [q], True, c, px(t), aa, _SHIFT)
    else:
      raise ValueError(kind)


def _quantise(xy: np.ndarray) -> np.ndarray:
  return np.round(np.asarray(xy, np.float64) * _SUB) / _SUB


def _local_extent(prims) -> tuple[np.ndarray, np.ndarray]:
  """Min and max corner of all primitives in local units (padded)."""
  points, pads = [], []
  for kind, geom, _, _ in prims:
    if kind == 'line':
      points += [geom[0], geom[1]]
      pads += [geom[2] / 2] * 2
    elif kind == 'circle':
      points.append(geom[0])
      pads.append(geom[1])
    elif kind == 'poly':
      points += list(geom[0])
      pads += [0.0] * len(geom[0])
    else:
      points += list(geom[0])
      pads += [geom[1]] * len(geom[0])
  points = np.asarray(points)
  pads = np.asarray(pads)[:, None]
  return (points - pads).min(0), (points + pads).max(0)


def _place(rng: np.random.Generator, figure: dict, height: int, width: int):
  """Samples scale, rotation and position of a figure in the image."""
  scale = height * math.exp(rng.uniform(math.log(_MIN_HEIGHT_FRAC),
                                        math.log(_MAX_HEIGHT_FRAC)))
  rotation = float(np.clip(rng.normal(0, _ROTATION_SD_DEG), -_ROTATION_MAX_DEG,
                           _ROTATION_MAX_DEG))
  # Rotated extent of the figure around its local origin, in pixels.
  lo, hi = _local_extent(figure['prims'])
  corners = np.array([[lo[0], lo[1]], [hi[0], lo[1]], [lo[0], hi[1]],
                      [hi[0], hi[1]]])
  corners = np.stack([_rotate(c, rotation) for c in corners]) * scale
  ext_lo, ext_hi = corners.min(0), corners.max(0)
  size = np.array([width, height], np.float64)
  # Centres that keep the whole extent inside the frame (or, for a figure
  # larger than the frame, keep it as central as possible).
  c_lo = -ext_lo
  c_hi = size - 1 - ext_hi
  centre = np.empty(2)
  for axis in range(2):
    a, b = sorted((c_lo[axis], c_hi[axis]))
    centre[axis] = rng.uniform(a, b)
  if rng.uniform() < _P_PARTLY_OUTSIDE:
    # Push the figure across one edge by 20-60% of its extent.
    axis = int(rng.integers(2))
    frac = rng.uniform(0.2, 0.6) * (ext_hi[axis] - ext_lo[axis])
    if rng.uniform() < 0.5:
      centre[axis] = -ext_lo[axis] - frac
    else:
      centre[axis] = size[axis] - 1 - ext_hi[axis] + frac
  return scale, rotation, _quantise(centre), centre + ext_lo, centre + ext_hi


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
  """Smooth random colour field with texture and 5-20 distractor shapes."""
  gh, gw = rng.integers(2, 6, size=2)
  base = rng.uniform(20, 235, (gh, gw, 3)).astype(np.float32)
  # Partly desaturated: real scenes are rarely all rainbow.
  grey = base.mean(-1, keepdims=True)
  base = grey + rng.uniform(0.3, 1.0) * (base - grey)
  img = cv2.resize(base, (width, height), interpolation=cv2.INTER_CUBIC)
  cell = int(rng.choice((4, 8, 16)))
  detail = rng.normal(0, rng.uniform(5, 25),
                      (max(2, height // cell), max(2, width // cell), 3))
  img += cv2.resize(detail.astype(np.float32), (width, height),
                    interpolation=cv2.INTER_LINEAR)
  if rng.uniform() < 0.3:
    # Stripes, like fences, tiles or fabric.
    angle = rng.uniform(0, math.pi)
    period = rng.uniform(4, 30)
    yy, xx = np.ogrid[:height, :width]
    phase = (xx * math.cos(angle) + yy * math.sin(angle)) * (2 * math.pi / period)
    img += (rng.uniform(8, 30) * np.sin(phase)).astype(np.float32)[..., None]
  img = np.clip(img, 0, 255).astype(np.uint8)

  scale = min(height, width)
  aa = cv2.LINE_AA
  for _ in range(int(rng.integers(5, 21))):
    kind = rng.choice(('rect', 'ellipse', 'poly', 'line', 'bar', 'bar'))
    c = rng.uniform((0, 0), (width, height))
    size = scale * rng.uniform(0.04, 0.35)
    if kind == 'bar':
      # Limb-like: thick, round-ended, in clothing or skin colours.
      rgb = (_jitter(rng, _SKIN_RGB[rng.integers(len(_SKIN_RGB))], 15)
             if rng.uniform() < 0.4 else _random_rgb(rng))
      d = _rotate(np.array([size, 0.0]), rng.uniform(0, 360))
      t = max(2, int(round(scale * rng.uniform(0.015, 0.06))))
      p0, p1 = _to_sub(c - d / 2), _to_sub(c + d / 2)
      cv2.line(img, tuple(p0), tuple(p1), _bgr(_shade(rgb, 0.55)), t + 2, aa,
               _SHIFT)
      cv2.line(img, tuple(p0), tuple(p1), _bgr(rgb), t, aa, _SHIFT)
      continue
    color = _bgr(_random_rgb(rng, s_range=(0.0, 1.0), v_range=(0.1, 1.0)))
    if kind == 'rect':
      half = np.array([size, size * rng.uniform(0.2, 1.0)]) / 2
      corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half
      angle = rng.uniform(0, 180)
      pts = np.stack([c + _rotate(p, angle) for p in corners])
      cv2.fillPoly(img, [_to_sub(pts)], color, aa, _SHIFT)
    elif kind == 'ellipse':
      axes = _to_sub(np.array([size, size * rng.uniform(0.3, 1.0)]) / 2)
      cv2.ellipse(img, tuple(_to_sub(c)), tuple(axes), rng.uniform(0, 180), 0,
                  360, color, -1, aa, _SHIFT)
    elif kind == 'poly':
      n = int(rng.integers(3, 7))
      angles = np.sort(rng.uniform(0, 2 * math.pi, n))
      radii = size / 2 * rng.uniform(0.4, 1.0, n)
      pts = c + np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1)
      cv2.fillPoly(img, [_to_sub(pts)], color, aa, _SHIFT)
    else:
      d = _rotate(np.array([size * 2, 0.0]), rng.uniform(0, 360))
      cv2.line(img, tuple(_to_sub(c - d / 2)), tuple(_to_sub(c + d / 2)), color,
               int(rng.integers(1, 4)), aa, _SHIFT)
  return img


def _occluder(rng: np.random.Generator, img: np.ndarray, kps: np.ndarray,
              labelled: np.ndarray, scale: float) -> np.ndarray:
  """Draws an opaque shape over one of the figure's joints; returns its mask."""
  height, width = img.shape[:2]
  candidates = np.flatnonzero(labelled)
  c = kps[rng.choice(candidates)] + rng.normal(0, 0.05 * scale, 2)
  size = scale * rng.uniform(0.15, 0.35, 2)
  color = _bgr(_random_rgb(rng, s_range=(0.0, 1.0), v_range=(0.1, 1.0)))
  mask = np.zeros((height, width), np.uint8)
  aa = cv2.LINE_AA
  is_rect = rng.uniform() < 0.5
  angle = rng.uniform(0, 180)
  if is_rect:
    half = size / 2
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half
    pts = _to_sub(np.stack([c + _rotate(p, angle) for p in corners]))
    for target, col in ((img, color), (mask, 255)):
      cv2.fillPoly(target, [pts], col, aa, _SHIFT)
  else:
    centre, axes = tuple(_to_sub(c)), tuple(_to_sub(size / 2))
    for target, col in ((img, color), (mask, 255)):
      cv2.ellipse(target, centre, axes, angle, 0, 360, col, -1, aa, _SHIFT)
  return mask >= 128


def _pixel(xy: np.ndarray) -> tuple[int, int]:
  """(row, col) of the pixel whose centre is nearest to (x, y)."""
  return int(math.floor(xy[1] + 0.5)), int(math.floor(xy[0] + 0.5))


def _render_image(rng: np.random.Generator, image_size: tuple[int, int],
                  max_figures: int) -> dict:
  """Renders one image and its figures.

  Args:
    rng: the image's own generator.
    image_size: (height, width).
    max_figures: cap on the number of figures (the end of a split).

  Returns:
    dict with 'image' (uint8 HxWx3 BGR), 'background' (the image before the
    figures and occluders, before global noise and blur) and 'figures', a list
    in drawing order of dicts with 'keypoints' (17, 2) float, 'visibility'
    (17,) int, 'bbox', 'area', 'back_facing', 'scale' (standing height in
    px), 'silhouette' (HxW bool, the whole figure inside the frame) and
    'visible' (HxW bool, the silhouette minus everything drawn later).
  """
  height, width = image_size
  img = _background(rng, height, width)
  background = img.copy()
  num = min(int(rng.choice(3, p=_FIGURE_COUNT_PROBS)) + 1, max_figures)

  figures = []
  layers = []  # (figure index or -1 for an occluder, bool mask), drawing order
  for _ in range(num):
    for _ in range(_PLACEMENT_TRIES):
      fig = _sample_figure(rng)
      scale, rotation, centre, ext_lo, ext_hi = _place(rng, fig, height, width)
      x0 = max(0, int(math.floor(ext_lo[0])) - 2)
      y0 = max(0, int(math.floor(ext_lo[1])) - 2)
      x1 = min(width, int(math.ceil(ext_hi[0])) + 3)
      y1 = min(height, int(math.ceil(ext_hi[1])) + 3)
      if x1 - x0 < _MIN_BOX_SIDE or y1 - y0 < _MIN_BOX_SIDE:
        continue
      a = math.radians(rotation)
      rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
      kps = _quantise(centre + scale * fig['keypoints'] @ rot.T)
      in_frame = ((kps[:, 0] >= 0) & (kps[:, 0] <= width - 1) &
                  (kps[:, 1] >= 0) & (kps[:, 1] <= height - 1))
      labelled = fig['labelled'] & in_frame
      if labelled.sum() < _MIN_KEYPOINTS:
        continue
      origin = np.array([x0, y0], np.float64)
      canvas = np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
      alpha = np.zeros((y1 - y0, x1 - x0), np.uint8)
      _draw_prims(canvas, alpha, fig['prims'], origin, scale, rotation, centre)
      sil = np.zeros((height, width), bool)
      sil[y0:y1, x0:x1] = alpha >= 128
      rows, cols = np.any(sil, 1), np.any(sil, 0)
      if not rows.any():
        continue
      r0, r1 = np.flatnonzero(rows)[[0, -1]]
      c0, c1 = np.flatnonzero(cols)[[0, -1]]
      if r1 - r0 + 1 < _MIN_BOX_SIDE or c1 - c0 + 1 < _MIN_BOX_SIDE:
        continue
      area = int(sil.sum())
      if any(np.logical_and(sil, f['silhouette']).sum() >
             _MAX_OVERLAP * min(area, f['area']) for f in figures):
        continue
      break
    else:
      continue  # no acceptable placement: fewer figures in this image

    # Composite with a soft edge and a light directional shading.
    ys, xs = np.ogrid[y0:y1, x0:x1]
    light = _rotate(np.array([1.0, 0.0]), rng.uniform(0, 360))
    strength = rng.uniform(0.1, 0.35) / scale
    shading = 1 + strength * ((xs - centre[0]) * light[0] +
                              (ys - centre[1]) * light[1])
    a = (alpha.astype(np.float32) / 255)[..., None]
    crop = img[y0:y1, x0:x1].astype(np.float32)
    fig_px = canvas.astype(np.float32) * shading.astype(np.float32)[..., None]
    img[y0:y1, x0:x1] = np.clip(crop * (1 - a) + fig_px * a, 0, 255).astype(
        np.uint8)

    index = len(figures)
    layers.append((index, sil))
    figures.append(dict(keypoints=kps, labelled=labelled,
                        back_facing=fig['back_facing'], scale=scale,
                        bbox=[float(c0), float(r0), float(c1 - c0 + 1),
                              float(r1 - r0 + 1)],
                        area=float(area), silhouette=sil))
    if rng.uniform() < _P_OCCLUDER:
      layers.append((-1, _occluder(rng, img, kps, labelled, scale)))

  # Visibility from masks: a labelled joint is occluded when anything drawn
  # after its figure (occluders, later figures) covers its pixel.
  for i, fig in enumerate(figures):
    start = next(n for n, (owner, _) in enumerate(layers) if owner == i) + 1
    later = [m for _, m in layers[start:]]
    covered = np.zeros((height, width), bool)
    for m in later:
      covered |= m
    fig['visible'] = fig['silhouette'] & ~covered
    vis = np.zeros(_NUM_KP, np.int64)
    for k in np.flatnonzero(fig['labelled']):
      vis[k] = 1 if covered[_pixel(fig['keypoints'][k])] else 2
    fig['visibility'] = vis
    fig['keypoints'] = np.where(vis[:, None] > 0, fig['keypoints'], 0.0)
    del fig['labelled']

  # Mild camera blur and sensor noise.
  if rng.uniform() < 0.5:
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.0))
  noise_sd = rng.uniform(2, 6)
  grain = np.frombuffer(rng.bytes(height * width * 3), np.uint8).reshape(
      height, width, 3)
  # Uniform bytes shifted to zero mean, scaled to the sampled sd (uniform on
  # [-128, 127] has sd ~74), cheaper than drawing normals.
  noisy = img.astype(np.float32) + (grain.astype(np.float32) - 127.5) * (
      noise_sd / 73.9)
  img = np.clip(noisy + 0.5, 0, 255).astype(np.uint8)
  return dict(image=img, background=background, figures=figures)


# ----------------------------------------------------------------------------
# COCO files.


def _split_code(split: str) -> int:
  return zlib.crc32(split.encode('utf-8'))


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
  """The generator of one image, independent of generation order."""
  return np.random.default_rng(
      np.random.SeedSequence([seed, _split_code(split), index]))


def coco_categories() -> list[dict]:
  return [dict(
      id=1, name='person', supercategory='person',
      keypoints=list(_SPEC.keypoint_names),
      skeleton=[[a + 1, b + 1] for a, b in _SPEC.skeleton])]


def _num(x: float):
  # Keypoints are multiples of 1/16, so this is exact; ints stay compact.
  x = float(x)
  return int(x) if x.is_integer() else x


def generate_split(root: str, split: str, num_figures: int, seed: int,
                   image_size: tuple[int, int] = (256, 256)) -> dict:
  """Generates one split with exactly `num_figures` annotated figures.

  Writes `root/<split>/<image_id:012d>.jpg` and
  `root/annotations/person_keypoints_<split>.json`.

  Args:
    root: dataset directory.
    split: split name, e.g. 'train'; also seeds the split's random stream.
    num_figures: number of annotated figures; images are generated until it is
      reached (the last image may hold fewer figures).
    seed: base seed.
    image_size: (height, width) of every image.

  Returns:
    The COCO json dict.
  """
  height, width = (int(s) for s in image_size)
  if num_figures < 0:
    raise ValueError(f'num_figures must be >= 0, got {num_figures}.')
  image_dir = os.path.join(root, split)
  os.makedirs(image_dir, exist_ok=True)
  os.makedirs(os.path.join(root, 'annotations'), exist_ok=True)

  images, annotations = [], []
  index = 0
  empty_in_a_row = 0
  while len(annotations) < num_figures:
    rng = image_rng(seed, split, index)
    index += 1
    out = _render_image(rng, (height, width), num_figures - len(annotations))
    if not out['figures']:
      empty_in_a_row += 1
      if empty_in_a_row > 100:
        raise RuntimeError(f'No figure fits in images of size {image_size}.')
      continue
    empty_in_a_row = 0
    image_id = len(images) + 1
    file_name = f'{image_id:012d}.jpg'
    ok, data = cv2.imencode('.jpg', out['image'],
                            [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
    if not ok:
      raise RuntimeError(f'JPEG encoding failed for {file_name}.')
    with open(os.path.join(image_dir, file_name), 'wb') as f:
      f.write(data.tobytes())
    images.append(dict(id=image_id, file_name=file_name, width=width,
                       height=height))
    for fig in out['figures']:
      flat = np.concatenate([fig['keypoints'], fig['visibility'][:, None]], 1)
      annotations.append(dict(
          id=len(annotations) + 1, image_id=image_id, category_id=1,
          bbox=[float(b) for b in fig['bbox']], area=float(fig['area']),
          iscrowd=0, num_keypoints=int((fig['visibility'] > 0).sum()),
          keypoints=[_num(v) for v in flat.reshape(-1)]))

  coco = dict(
      info=dict(description=f'posejax synthetic person keypoints ({split})',
                version=str(_GENERATOR_VERSION)),
      images=images, annotations=annotations, categories=coco_categories())
  path = os.path.join(root, 'annotations', f'person_keypoints_{split}.json')
  with open(path, 'w') as f:
    json.dump(coco, f, separators=(',', ':'))
  return coco


def _params(num_train, num_val, seed, image_size) -> dict:
  return dict(generator_version=_GENERATOR_VERSION, num_train=int(num_train),
              num_val=int(num_val), seed=int(seed),
              image_size=[int(s) for s in image_size])


def _read_marker(root: str) -> dict | None:
  try:
    with open(os.path.join(root, _MARKER)) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def ensure_synthetic_coco(root: str, num_train: int = 5000, num_val: int = 500,
                          seed: int = 0, image_size=(256, 256)) -> str:
  """Makes `root` hold a synthetic COCO dataset with these parameters.

  Does nothing when `root/GENERATED.json` (written last) records the same
  parameters. Otherwise generates 'train' and 'val' into a temporary directory
  next to `root` and renames it into place, so a killed run never leaves a
  partial dataset that looks complete. An older generation with other
  parameters is replaced; a `root` that is not a generation is never deleted.

  Returns:
    root.
  """
  params = _params(num_train, num_val, seed, image_size)
  if _read_marker(root) == params:
    return root
  if os.path.exists(root) and _read_marker(root) is None and os.listdir(root):
    raise FileExistsError(
        f'{root} exists and is not a posejax synthetic dataset (no {_MARKER}); '
        'remove it or choose another directory for the synthetic data.')
  parent, name = os.path.split(os.path.abspath(root))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f'.{name}.partial-', dir=parent)
  try:
    generate_split(tmp, 'train', num_train, seed, image_size)
    generate_split(tmp, 'val', num_val, seed, image_size)
    with open(os.path.join(tmp, _MARKER), 'w') as f:
      json.dump(params, f, indent=2)
    if _read_marker(root) == params:
      # Another process finished the same generation meanwhile.
      shutil.rmtree(tmp)
      return root
    if os.path.exists(root):
      old = tempfile.mkdtemp(prefix=f'.{name}.old-', dir=parent)
      os.replace(root, old)
      os.replace(tmp, root)
      shutil.rmtree(old, ignore_errors=True)
    else:
      os.replace(tmp, root)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return root
