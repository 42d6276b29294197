"""Synthetic COCO person keypoints: articulated figures in cluttered scenes.

Writes the exact COCO 2017 person-keypoint layout (`<root>/<split>/*.jpg` and
`<root>/annotations/person_keypoints_<split>.json`), so the whole data path
(builder, pipeline, training, COCO evaluation) runs with no download.

Each image holds 1-3 figures: a body model (head, neck, torso, limbs, hands,
feet) with the 17 COCO keypoints at its joint centres and on its head, at
varied scale, position, in-plane rotation and limb angles (mostly everyday
poses, as in photos of people, with a share of raised arms and legs; knees
never bend sideways), on a textured
background with distractor shapes (some limb-like), sometimes behind an
occluder or partly out of the frame.

Left and right are learnable only from the figure's own cues, as in real
photos: left and right limbs share their colours, and a figure is front-facing
(face drawn, its anatomical left on the image right) or, less often, as in
photos of people, back-facing (hair only, its anatomical left on the image
left, nose and eyes not labelled), with probabilities 0.7 and 0.3.

Conventions:
  * Keypoints are 0-based pixels, the centre of the top-left pixel is (0, 0),
    which is also cv2's drawing convention; every point is drawn with
    `shift=4` at exactly its annotated (x, y), a multiple of 1/16.
  * Visibility: 2 visible; 1 inside the frame but covered by an occluder or a
    later-drawn figure (from masks, at the keypoint's pixel); 0 outside the
    frame, or nose and eyes of a back-facing figure. v=0 keypoints are written
    as 0, 0, 0. A figure's own parts never make its joints v=1.
  * bbox is the tight box of the figure's silhouette pixels inside the image,
    as pycocotools' `mask.toBbox` gives it: [x0, y0, x1 - x0 + 1, y1 - y0 + 1]
    for the first and last silhouette columns x0, x1 (rows alike). area is
    the silhouette's pixel count inside the image. Occluders are subtracted
    from neither.
  * Figures that would have fewer than 3 labelled keypoints or a box side
    under 8 px are re-placed before anything is drawn, so every figure in an
    image is annotated.

Everything is deterministic: an image depends only on (seed, split, image
index), through `np.random.SeedSequence`.
"""

from __future__ import annotations

import cmath
import colorsys
import functools
import json
import math
import os
import shutil
import statistics
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

# Bumped whenever the generated content changes, so that
# `ensure_synthetic_coco` replaces data made by an older generator.
_GENERATOR_VERSION = 4
_MARKER = 'GENERATED.json'

_FIGURE_COUNT_PROBS = (0.4, 0.35, 0.25)  # 1, 2 or 3 figures per image
# Standing height as a fraction of the image height, log-uniform.
_MIN_HEIGHT_FRAC, _MAX_HEIGHT_FRAC = 0.25, 0.9
_ROTATION_SD_DEG, _ROTATION_MAX_DEG = 20.0, 60.0
_P_PARTLY_OUTSIDE = 0.15
_P_OCCLUDER = 0.3
_P_BACK_FACING = 0.3
# Pose prior: everyday poses dominate photos, as in COCO.
_P_RELAXED_ARM = 0.6
_P_RAISED_LEG = 0.15
# A new figure may cover at most this fraction of an earlier one (or of
# itself), so overlaps stay small.
_MAX_OVERLAP = 0.25
_PLACEMENT_TRIES = 8
_MIN_KEYPOINTS = 3
_MIN_BOX_SIDE = 8
_JPEG_QUALITY = 90

# Body proportions in units of standing height; local origin at mid-height,
# y down, x to the image right (before rotation). Points are complex numbers
# x + iy: cheap to rotate and add in plain Python.
_SHOULDER_Y = 0.175 - 0.5
_HIP_Y = 0.48 - 0.5
_HEAD_R = 0.065
_SHOULDER_HALF = 0.11
_HIP_HALF = 0.075
_UPPER_ARM, _FOREARM = 0.165, 0.145
_THIGH, _SHIN = 0.24, 0.235
_OUTLINE = 0.012  # dark edge around limbs and torso, each side
_MIN_LIMB_PX = 3  # thinner limbs would not cover their own joint pixels

# Palettes (RGB). Hair is always darker than the skin so that the back of a
# head never looks like a face.
_SKIN_RGB = ((255, 224, 196), (241, 194, 167), (224, 172, 105),
             (198, 134, 66), (141, 85, 36), (92, 58, 40))
_HAIR_RGB = ((15, 12, 10), (45, 30, 20), (80, 50, 28), (120, 75, 35),
             (170, 135, 80), (95, 90, 85))


# ----------------------------------------------------------------------------
# Small helpers.


def _kp(name: str) -> int:
  return _SPEC.index(name)


def _luma(rgb) -> float:
  return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def _bgr(rgb, factor: float = 1.0) -> tuple[int, int, int]:
  """cv2 colour from RGB, optionally brightened or darkened by `factor`."""
  r, g, b = (min(255, max(0, int(round(c * factor)))) for c in rgb)
  return (b, g, r)


def _random_rgb(rng: np.random.Generator, s_range=(0.15, 1.0),
                v_range=(0.2, 0.95)) -> tuple[float, float, float]:
  h, s, v = rng.random(3).tolist()
  s = s_range[0] + (s_range[1] - s_range[0]) * s
  v = v_range[0] + (v_range[1] - v_range[0]) * v
  return tuple(255 * c for c in colorsys.hsv_to_rgb(h, s, v))


def _palette_rgb(rng: np.random.Generator, palette, jitter: float):
  rgb = palette[int(rng.integers(len(palette)))]
  noise = rng.uniform(-jitter, jitter, 3).tolist()
  return tuple(min(255.0, max(0.0, c + d)) for c, d in zip(rgb, noise))


def _direction(angle_deg: float, side: int) -> complex:
  """Unit vector: 0 deg points down, positive turns outwards towards `side`."""
  a = math.radians(angle_deg)
  return complex(side * math.sin(a), math.cos(a))


def _turn(angle_deg: float) -> complex:
  """Multiplying by this rotates by `angle_deg` (clockwise on screen)."""
  return cmath.exp(1j * math.radians(angle_deg))


def _sub(z: complex) -> tuple[int, int]:
  """cv2 sub-pixel point of an image position."""
  return (int(round(z.real * _SUB)), int(round(z.imag * _SUB)))


def _sub_array(zs) -> np.ndarray:
  zs = np.asarray(zs, np.complex128)
  return np.round(np.stack([zs.real, zs.imag], -1) * _SUB).astype(np.int32)


# ----------------------------------------------------------------------------
# Body model.
#
# A figure is a list of primitives in local units (standing height = 1), each
# `(kind, points, size, bgr, in_mask)`, drawn in order:
#   'line'     points (p0, p1), size = thickness   thick line, round ends
#   'circle'   points (centre,), size = radius     filled disc
#   'poly'     points, size unused                 filled polygon
#   'outline'  points, size = thickness            closed polyline
# `in_mask` is False for details inside other primitives (face features),
# which the silhouette mask does not need.


def _sample_figure(rng: np.random.Generator) -> dict:
  """Samples pose, proportions, facing and colours of one figure.

  Returns:
    dict with 'keypoints' (17,) complex local positions, 'labelled' (17,)
    bool, 'back_facing' and 'prims' (the drawing list).
  """
  back_facing = bool(rng.uniform() < _P_BACK_FACING)
  # Image side (before rotation) of the anatomical left: +1 right, -1 left.
  left_side = -1 if back_facing else 1

  prop = lambda: rng.uniform(0.85, 1.15)  # proportions vary by +-15%
  torso_scale = rng.uniform(0.9, 1.1)
  shoulder_half, hip_half = _SHOULDER_HALF * prop(), _HIP_HALF * prop()
  arm_scale, leg_scale = prop(), prop()
  head_r = _HEAD_R * rng.uniform(0.9, 1.1)
  thick = rng.uniform(0.8, 1.2)
  upper_arm_t, forearm_t = 0.07 * thick, 0.06 * thick
  thigh_t, shin_t = 0.09 * thick, 0.075 * thick

  # Torso: shoulder and hip lines tilt a little, the chest may lean sideways.
  hip_c = complex(rng.normal(0, 0.02), _HIP_Y)
  shoulder_c = hip_c + complex(rng.normal(0, 0.02),
                               (_SHOULDER_Y - _HIP_Y) * torso_scale)
  shoulder_axis = _turn(rng.normal(0, 5))
  hip_axis = _turn(rng.normal(0, 5))
  shoulder = {s: shoulder_c + s * shoulder_half * shoulder_axis
              for s in (-1, 1)}
  hip = {s: hip_c + s * hip_half * hip_axis for s in (-1, 1)}

  def foreshortened(length):
    # Limbs pointing partly towards or away from the camera look shorter.
    return length * (rng.uniform(0.75, 1.0) if rng.uniform() < 0.3 else 1.0)

  elbow, wrist, knee, ankle, forearm_dir, shin_dir = {}, {}, {}, {}, {}, {}
  for s in (-1, 1):
    # Angles in degrees from straight down, positive outwards. Most arms in
    # photos hang or bend in front of the body; the rest are anywhere from
    # across the chest to straight overhead.
    if rng.uniform() < _P_RELAXED_ARM:
      upper = rng.uniform(-15, 45)
      bend = rng.uniform(0, 130) * (-1 if rng.uniform() < 0.7 else 1)
    else:
      upper = rng.uniform(-25, 175)
      bend = rng.uniform(0, 150) * (1 if rng.uniform() < 0.5 else -1)
    elbow[s] = shoulder[s] + foreshortened(_UPPER_ARM * arm_scale) * _direction(
        upper, s)
    forearm_dir[s] = _direction(upper + bend, s)
    wrist[s] = elbow[s] + foreshortened(_FOREARM * arm_scale) * forearm_dir[s]

    # Knees do not bend sideways: seen from the front, a bent knee shows as a
    # foreshortened thigh or shin, and a leg raised sideways lets its shin
    # hang back towards vertical. So the shin points at most a little
    # inwards, and legs cross only as far as real ones do.
    if rng.uniform() < _P_RAISED_LEG:
      thigh = rng.uniform(30, 100)
      shin = rng.uniform(-10, thigh)
    else:
      thigh = rng.uniform(-8, 25)  # together .. apart
      shin = thigh + rng.uniform(-12, 12)
    knee[s] = hip[s] + foreshortened(_THIGH * leg_scale) * _direction(thigh, s)
    shin_dir[s] = _direction(shin, s)
    ankle[s] = knee[s] + foreshortened(_SHIN * leg_scale) * shin_dir[s]

  # Head frame: `down` runs from the crown to the chin, `right` to the head's
  # image right (before rotation).
  down = 1j * _turn(rng.normal(0, 12))
  right = -1j * down
  head_c = shoulder_c - (_SHOULDER_Y + 0.5 - _HEAD_R) * torso_scale * down
  at = lambda a, b: head_c + head_r * (a * right + b * down)
  yaw = rng.uniform(-0.3, 0.3)  # face turned a little to one side

  kps = np.zeros(_NUM_KP, np.complex128)
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
  labelled = np.ones(_NUM_KP, bool)
  if back_facing:
    # Not labelled, as COCO annotators do for people seen from behind.
    for name in ('nose', 'left_eye', 'right_eye'):
      labelled[_kp(name)] = False

  # Colours: left and right share every colour, so colour never tells side.
  skin = _palette_rgb(rng, _SKIN_RGB, 12)
  darker = [h for h in _HAIR_RGB if _luma(h) < 0.7 * _luma(skin)]
  hair = _palette_rgb(rng, darker or _HAIR_RGB[:1], 10)
  top = _random_rgb(rng)
  sleeve = tuple(c * rng.uniform(0.8, 1.2) for c in top)  # arms show on torso
  bottom = _random_rgb(rng, v_range=(0.15, 0.8))
  shoe = _random_rgb(rng, s_range=(0.0, 0.6), v_range=(0.05, 0.5))
  forearm_rgb = skin if rng.uniform() < 0.4 else sleeve  # short sleeves
  shin_rgb = skin if rng.uniform() < 0.25 else bottom  # shorts

  prims = []

  def chain(segments):
    # Both outlines first, so that no outline crosses the middle joint.
    for p0, p1, t, rgb in segments:
      prims.append(('line', (p0, p1), t + 2 * _OUTLINE, _bgr(rgb, 0.55), True))
    for p0, p1, t, rgb in segments:
      prims.append(('line', (p0, p1), t, _bgr(rgb), True))

  # Back to front: legs, torso, arms, neck, head.
  for s in (-1, 1):
    toe = ankle[s] + 0.045 * shin_dir[s] * _turn(-s * rng.uniform(40, 80))
    prims.append(('line', (ankle[s], toe), 0.05 * thick, _bgr(shoe), True))
    chain([(hip[s], knee[s], thigh_t, bottom),
           (knee[s], ankle[s], shin_t, shin_rgb)])

  torso = (shoulder[-1] - 0.035 * shoulder_axis - 0.01 * down,
           shoulder[1] + 0.035 * shoulder_axis - 0.01 * down,
           0.35 * shoulder[1] + 0.65 * hip[1] + 0.01 * shoulder_axis,
           hip[1] + 0.045 * hip_axis,
           hip[-1] - 0.045 * hip_axis,
           0.35 * shoulder[-1] + 0.65 * hip[-1] - 0.01 * shoulder_axis)
  prims.append(('poly', torso, 0.0, _bgr(top), True))
  prims.append(('outline', torso, _OUTLINE, _bgr(top, 0.55), True))

  for s in (-1, 1):
    chain([(shoulder[s], elbow[s], upper_arm_t, sleeve),
           (elbow[s], wrist[s], forearm_t, forearm_rgb)])
    prims.append(('circle', (wrist[s] + 0.025 * forearm_dir[s],), 0.03,
                  _bgr(skin), True))

  prims.append(('line', (shoulder_c, head_c), 0.05, _bgr(skin, 0.85), True))
  for s in (-1, 1):
    prims.append(('circle', (at(s * 0.93, 0.08),), 0.3 * head_r,
                  _bgr(skin, 0.9), True))
  prims.append(('circle', (head_c,), head_r, _bgr(hair), True))
  if back_facing:
    # Back of the head: hair, a lighter crown, a darker nape.
    prims.append(('circle', (at(0.15 * yaw, -0.35),), 0.35 * head_r,
                  _bgr(hair, 1.25), False))
    prims.append(('line', (at(-0.5, 0.75), at(0.5, 0.75)), 0.2 * head_r,
                  _bgr(hair, 0.7), False))
  else:
    # Face: skin below a hairline; eyes (white, pupil), nose, mouth.
    prims.append(('circle', (at(0.45 * yaw, 0.14),), 0.86 * head_r,
                  _bgr(skin), False))
    for s in (-1, 1):
      eye = complex(kps[_kp(f'{side_name[s]}_eye')])
      prims.append(('circle', (eye,), 0.17 * head_r, (235, 235, 235), False))
      prims.append(('circle', (eye + 0.2 * head_r * yaw * right,),
                    0.09 * head_r, (30, 25, 20), False))
    prims.append(('circle', (complex(kps[_kp('nose')]),), 0.1 * head_r,
                  _bgr(skin, 0.7), False))
    prims.append(('line', (at(yaw - 0.25, 0.58), at(yaw + 0.25, 0.58)),
                  0.08 * head_r, (40, 40, 150), False))
  return dict(keypoints=kps, labelled=labelled, back_facing=back_facing,
              prims=prims)


def _local_extent(prims) -> tuple[complex, complex]:
  """Corners (min, max) of the box around all primitives, local units."""
  lo_x = lo_y = math.inf
  hi_x = hi_y = -math.inf
  for kind, points, size, _, _ in prims:
    pad = size if kind == 'circle' else size / 2
    for p in points:
      lo_x, hi_x = min(lo_x, p.real - pad), max(hi_x, p.real + pad)
      lo_y, hi_y = min(lo_y, p.imag - pad), max(hi_y, p.imag + pad)
  return complex(lo_x, lo_y), complex(hi_x, hi_y)


# ----------------------------------------------------------------------------
# Drawing.


def _quantise(z: np.ndarray) -> np.ndarray:
  """Rounds image positions to the 1/16 px grid that cv2 draws on."""
  return (np.round(z.real * _SUB) + 1j * np.round(z.imag * _SUB)) / _SUB


def _to_image(local: np.ndarray, scale: float, rotation: complex,
              centre: complex) -> np.ndarray:
  """Local points -> image positions, as drawn and as annotated."""
  return _quantise(centre + scale * rotation * np.asarray(local, np.complex128))


def _draw_prims(target: np.ndarray, prims, origin: tuple[int, int],
                scale: float, rotation: complex, centre: complex,
                shading=None):
  """Draws a figure's primitives.

  Args:
    target: HxWx3 uint8 image, or HxW uint8 mask; on a mask the primitives
      with `in_mask` are drawn in 255 and the others skipped.
    prims: the figure's primitives, local units.
    origin: integer image position (x, y) of target[0, 0].
    scale: pixels per local unit (the standing height in px).
    rotation: unit complex number, the figure's in-plane rotation.
    centre: image position of the local origin. Points go through
      `_to_image`, as the keypoints do, so joints are drawn where annotated.
    shading: optional brightness factor per primitive.
  """
  is_mask = target.ndim == 2
  if is_mask:
    prims = [p for p in prims if p[4]]
  # One vectorised transform for all points; per-point Python is slow.
  local = np.array([p for prim in prims for p in prim[1]], np.complex128)
  image = _to_image(local, scale, rotation, centre) - complex(*origin)
  sub = _sub_array(image)
  aa = cv2.LINE_AA
  at = 0
  for n, (kind, points, size, color, _) in enumerate(prims):
    q = sub[at:at + len(points)]
    at += len(points)
    if is_mask:
      color = 255
    elif shading is not None:
      color = tuple(min(255, int(c * shading[n])) for c in color)
    if kind == 'line':
      minimum = _MIN_LIMB_PX if size > 0.03 else 1
      cv2.line(target, (int(q[0, 0]), int(q[0, 1])),
               (int(q[1, 0]), int(q[1, 1])), color,
               max(minimum, int(round(size * scale))), aa, _SHIFT)
    elif kind == 'circle':
      cv2.circle(target, (int(q[0, 0]), int(q[0, 1])),
                 max(_SUB // 2, int(round(size * scale * _SUB))), color, -1,
                 aa, _SHIFT)
    elif kind == 'poly':
      cv2.fillPoly(target, [q], color, aa, _SHIFT)
    elif kind == 'outline':
      cv2.polylines(target, [q], True, color, max(1, int(round(size * scale))),
                    aa, _SHIFT)
    else:
      raise ValueError(f'Unknown primitive {kind!r}.')


def _background(rng: np.random.Generator, height: int,
                width: int) -> np.ndarray:
  """Smooth random colour field with texture and 5-20 distractor shapes."""
  # Low-resolution colour field and texture, upsampled once in uint8: full-size
  # float arithmetic would cost more than everything else in an image.
  lh, lw = max(2, height // 4), max(2, width // 4)
  gh, gw = rng.integers(2, 6, size=2)
  base = rng.uniform(20, 235, (gh, gw, 3)).astype(np.float32)
  grey = base.mean(-1, keepdims=True)
  base = grey + rng.uniform(0.3, 1.0) * (base - grey)  # real scenes are dull
  field = cv2.resize(base, (lw, lh), interpolation=cv2.INTER_CUBIC)
  cell = int(rng.integers(1, 4))  # texture cells of 4, 8 or 16 px
  detail = rng.normal(0, rng.uniform(5, 25),
                      (max(2, lh >> (cell - 1)), max(2, lw >> (cell - 1)), 3))
  field += cv2.resize(detail.astype(np.float32), (lw, lh),
                      interpolation=cv2.INTER_LINEAR)
  field = np.clip(field, 0, 255).astype(np.uint8)
  img = cv2.resize(field, (width, height), interpolation=cv2.INTER_LINEAR)

  scale = min(height, width)
  aa = cv2.LINE_AA
  if rng.uniform() < 0.3:
    # Stripes, like fences, tiles or fabric: blended parallel bars.
    period = rng.uniform(5, 30)
    direction = _turn(rng.uniform(0, 180))
    stripes = img.copy()
    color = _bgr(_random_rgb(rng, s_range=(0.0, 1.0), v_range=(0.1, 1.0)))
    reach = math.hypot(height, width)
    middle = complex(width / 2, height / 2)
    t = max(1, int(round(period * rng.uniform(0.2, 0.6))))
    for k in range(-int(reach / period) // 2 - 1, int(reach / period) // 2 + 2):
      c = middle + k * period * direction * 1j
      cv2.line(stripes, _sub(c - reach * direction),
               _sub(c + reach * direction), color, t, aa, _SHIFT)
    alpha = rng.uniform(0.15, 0.5)
    img = cv2.addWeighted(img, 1 - alpha, stripes, alpha, 0)

  for _ in range(int(rng.integers(5, 21))):
    kind = int(rng.integers(6))
    c = complex(rng.uniform(0, width), rng.uniform(0, height))
    size = scale * rng.uniform(0.04, 0.35)
    direction = _turn(rng.uniform(0, 360))
    if kind >= 4:
      # Limb-like bar: thick, round-ended, in clothing or skin colours.
      rgb = (_palette_rgb(rng, _SKIN_RGB, 15) if rng.uniform() < 0.4 else
             _random_rgb(rng))
      t = max(2, int(round(scale * rng.uniform(0.015, 0.06))))
      p0, p1 = _sub(c - size / 2 * direction), _sub(c + size / 2 * direction)
      cv2.line(img, p0, p1, _bgr(rgb, 0.55), t + 2, aa, _SHIFT)
      cv2.line(img, p0, p1, _bgr(rgb), t, aa, _SHIFT)
      continue
    color = _bgr(_random_rgb(rng, s_range=(0.0, 1.0), v_range=(0.1, 1.0)))
    if kind == 0:  # rectangle
      half = complex(size, size * rng.uniform(0.2, 1.0)) / 2
      corners = [c + direction * complex(sx * half.real, sy * half.imag)
                 for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
      cv2.fillPoly(img, [_sub_array(corners)], color, aa, _SHIFT)
    elif kind == 1:  # ellipse, sometimes skin-coloured like a head
      if rng.uniform() < 0.2:
        color = _bgr(_palette_rgb(rng, _SKIN_RGB, 15))
      axes = _sub(complex(size, size * rng.uniform(0.3, 1.0)) / 2)
      cv2.ellipse(img, _sub(c), axes, rng.uniform(0, 180), 0, 360, color, -1,
                  aa, _SHIFT)
    elif kind == 2:  # polygon
      n = int(rng.integers(3, 7))
      angles = np.sort(rng.uniform(0, 2 * math.pi, n))
      radii = size / 2 * rng.uniform(0.4, 1.0, n)
      cv2.fillPoly(img, [_sub_array(c + radii * np.exp(1j * angles))], color,
                   aa, _SHIFT)
    else:  # thin line
      cv2.line(img, _sub(c - size * direction), _sub(c + size * direction),
               color, int(rng.integers(1, 4)), aa, _SHIFT)
  return img


def _occluder(rng: np.random.Generator, img: np.ndarray, kps: np.ndarray,
              labelled: np.ndarray, scale: float):
  """Draws an opaque shape over one of the figure's keypoints.

  Returns:
    Its layer (x0, y0, bool mask of the box starting there), or None when it
    misses the frame.
  """
  height, width = img.shape[:2]
  c = complex(kps[rng.choice(np.flatnonzero(labelled))])
  c += complex(*rng.normal(0, 0.05 * scale, 2))
  size = complex(*(scale * rng.uniform(0.15, 0.35, 2)))
  color = _bgr(_random_rgb(rng, s_range=(0.0, 1.0), v_range=(0.1, 1.0)))
  is_rect = rng.uniform() < 0.5
  angle = rng.uniform(0, 180)
  reach = abs(size) / 2 + 2
  x0, y0 = max(0, int(c.real - reach)), max(0, int(c.imag - reach))
  x1 = min(width, int(c.real + reach) + 2)
  y1 = min(height, int(c.imag + reach) + 2)
  if x1 <= x0 or y1 <= y0:
    return None
  mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
  for target, col, origin in ((img, color, 0j), (mask, 255, complex(x0, y0))):
    centre = c - origin
    if is_rect:
      corners = [centre + _turn(angle) * complex(sx * size.real, sy * size.imag)
                 / 2 for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
      cv2.fillPoly(target, [_sub_array(corners)], col, cv2.LINE_AA, _SHIFT)
    else:
      cv2.ellipse(target, _sub(centre), _sub(size / 2), angle, 0, 360, col, -1,
                  cv2.LINE_AA, _SHIFT)
  return x0, y0, mask >= 128


# A layer is (x0, y0, bool mask of the box whose top-left pixel is (x0, y0)):
# figures and occluders, kept as crops because full-image masks per layer
# would dominate the run time.


def _layer_covers(layer, row: int, col: int) -> bool:
  x0, y0, mask = layer
  r, c = row - y0, col - x0
  return 0 <= r < mask.shape[0] and 0 <= c < mask.shape[1] and bool(mask[r, c])


def _layer_overlap(a, b) -> int:
  """Number of pixels set in both layers."""
  ax, ay, am = a
  bx, by, bm = b
  x0, y0 = max(ax, bx), max(ay, by)
  x1 = min(ax + am.shape[1], bx + bm.shape[1])
  y1 = min(ay + am.shape[0], by + bm.shape[0])
  if x1 <= x0 or y1 <= y0:
    return 0
  return int(np.count_nonzero(am[y0 - ay:y1 - ay, x0 - ax:x1 - ax] &
                              bm[y0 - by:y1 - by, x0 - bx:x1 - bx]))


def _layer_full(layer, height: int, width: int) -> np.ndarray:
  x0, y0, mask = layer
  full = np.zeros((height, width), bool)
  full[y0:y0 + mask.shape[0], x0:x0 + mask.shape[1]] = mask
  return full


def _pixel(z: complex) -> tuple[int, int]:
  """(row, col) of the pixel whose centre is nearest to z = x + iy."""
  return int(math.floor(z.imag + 0.5)), int(math.floor(z.real + 0.5))


@functools.lru_cache(maxsize=64)
def _noise_luts(sd_tenths: int) -> tuple[np.ndarray, np.ndarray]:
  """Maps a uniform byte to Gaussian noise of sd/10, split into + and - parts.

  Adding the positive and subtracting the negative part with cv2's saturating
  uint8 arithmetic adds the signed noise with no float round trip, and random
  bytes are far cheaper to draw than normals.
  """
  dist = statistics.NormalDist(0.0, sd_tenths / 10)
  noise = np.array([round(dist.inv_cdf((b + 0.5) / 256)) for b in range(256)])
  positive = np.clip(noise, 0, 255).astype(np.uint8)
  negative = np.clip(-noise, 0, 255).astype(np.uint8)
  positive.flags.writeable = negative.flags.writeable = False
  return positive, negative


def _place(rng: np.random.Generator, figure: dict, height: int, width: int):
  """Samples scale (px), rotation and centre of a figure in the image.

  Returns:
    (scale, rotation as a unit complex, centre, box lo, box hi): image
    positions; the box bounds the rotated figure.
  """
  scale = height * math.exp(rng.uniform(math.log(_MIN_HEIGHT_FRAC),
                                        math.log(_MAX_HEIGHT_FRAC)))
  rotation = _turn(float(np.clip(rng.normal(0, _ROTATION_SD_DEG),
                                 -_ROTATION_MAX_DEG, _ROTATION_MAX_DEG)))
  lo, hi = _local_extent(figure['prims'])
  corners = [scale * rotation * complex(x, y) for x in (lo.real, hi.real)
             for y in (lo.imag, hi.imag)]
  ext_lo = complex(min(z.real for z in corners), min(z.imag for z in corners))
  ext_hi = complex(max(z.real for z in corners), max(z.imag for z in corners))
  # Centres that keep the whole figure inside the frame (for a figure larger
  # than the frame: as central as possible).
  centre = []
  for lo_, hi_, size in ((ext_lo.real, ext_hi.real, width),
                         (ext_lo.imag, ext_hi.imag, height)):
    a, b = sorted((-lo_, size - 1 - hi_))
    centre.append(rng.uniform(a, b))
  if rng.uniform() < _P_PARTLY_OUTSIDE:
    # Push the figure across one edge by 20-60% of its extent.
    axis = int(rng.integers(2))
    lo_, hi_ = (ext_lo.real, ext_hi.real) if axis == 0 else (ext_lo.imag,
                                                             ext_hi.imag)
    size = width if axis == 0 else height
    out = rng.uniform(0.2, 0.6) * (hi_ - lo_)
    centre[axis] = -lo_ - out if rng.uniform() < 0.5 else size - 1 - hi_ + out
  centre = complex(_quantise(np.complex128(complex(*centre))))
  return scale, rotation, centre, centre + ext_lo, centre + ext_hi


def _render_image(rng: np.random.Generator, image_size: tuple[int, int],
                  max_figures: int, with_masks: bool = False) -> dict:
  """Renders one image and its figures.

  Args:
    rng: the image's own generator.
    image_size: (height, width).
    max_figures: cap on the number of figures (the end of a split).
    with_masks: also return full-image masks per figure (for tests).

  Returns:
    dict with 'image' (uint8 HxWx3 BGR) and 'figures', a list in drawing
    order of dicts with 'keypoints' (17, 2) float (0 where v=0), 'visibility'
    (17,) int, 'bbox', 'area', 'back_facing' and 'scale' (standing height in
    px). With masks also 'background' (the image before figures and
    occluders, before the final blur and noise) and per figure 'silhouette'
    (HxW bool, the figure inside the frame), 'occluder' (HxW bool, the shape
    drawn right after the figure; empty if none) and 'visible' (the
    silhouette minus everything drawn after it).
  """
  height, width = image_size
  img = _background(rng, height, width)
  background = img.copy() if with_masks else None
  num = min(int(rng.choice(3, p=_FIGURE_COUNT_PROBS)) + 1, max_figures)

  figures = []
  # (owner figure, layer) in drawing order; an occluder's owner is the figure
  # drawn just before it, negated and minus one.
  layers = []
  for _ in range(num):
    for _ in range(_PLACEMENT_TRIES):
      fig = _sample_figure(rng)
      scale, rotation, centre, ext_lo, ext_hi = _place(rng, fig, height, width)
      x0 = max(0, int(math.floor(ext_lo.real)) - 2)
      y0 = max(0, int(math.floor(ext_lo.imag)) - 2)
      x1 = min(width, int(math.ceil(ext_hi.real)) + 3)
      y1 = min(height, int(math.ceil(ext_hi.imag)) + 3)
      if x1 - x0 < _MIN_BOX_SIDE or y1 - y0 < _MIN_BOX_SIDE:
        continue
      kps = _to_image(fig['keypoints'], scale, rotation, centre)
      labelled = fig['labelled'] & ((kps.real >= 0) & (kps.real <= width - 1) &
                                    (kps.imag >= 0) & (kps.imag <= height - 1))
      if labelled.sum() < _MIN_KEYPOINTS:
        continue
      alpha = np.zeros((y1 - y0, x1 - x0), np.uint8)
      _draw_prims(alpha, fig['prims'], (x0, y0), scale, rotation, centre)
      sil = alpha >= 128
      rows = np.flatnonzero(sil.any(1))
      cols = np.flatnonzero(sil.any(0))
      if (len(rows) == 0 or rows[-1] - rows[0] + 1 < _MIN_BOX_SIDE or
          cols[-1] - cols[0] + 1 < _MIN_BOX_SIDE):
        continue
      layer = (x0, y0, sil)
      area = int(np.count_nonzero(sil))
      if any(_layer_overlap(layer, f['layer']) > _MAX_OVERLAP * min(
          area, f['area']) for f in figures):
        continue
      break
    else:
      continue  # no acceptable placement: fewer figures in this image

    # Light from one side: parts facing it are brighter.
    light = _turn(rng.uniform(0, 360))
    strength = rng.uniform(0.3, 0.8)
    shading = [1 + strength * (p[1][0] * light.conjugate()).real
               for p in fig['prims']]
    _draw_prims(img, fig['prims'], (0, 0), scale, rotation, centre, shading)

    layers.append((len(figures), layer))
    figures.append(dict(
        keypoints=kps, labelled=labelled, back_facing=fig['back_facing'],
        scale=scale, layer=layer, area=area,
        bbox=[float(x0 + cols[0]), float(y0 + rows[0]),
              float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)]))
    if rng.uniform() < _P_OCCLUDER:
      occluder = _occluder(rng, img, kps, labelled, scale)
      if occluder is not None:
        layers.append((-len(figures), occluder))

  # Visibility from masks: a labelled keypoint is occluded when anything drawn
  # after its figure (occluders, later figures) covers its pixel.
  for i, fig in enumerate(figures):
    start = [owner for owner, _ in layers].index(i) + 1
    later = [layer for _, layer in layers[start:]]
    vis = np.zeros(_NUM_KP, np.int64)
    for k in np.flatnonzero(fig.pop('labelled')):
      row, col = _pixel(fig['keypoints'][k])
      vis[k] = 1 if any(_layer_covers(l, row, col) for l in later) else 2
    kps = np.where(vis > 0, fig['keypoints'], 0)
    fig['keypoints'] = np.stack([kps.real, kps.imag], -1)
    fig['visibility'] = vis
    fig['area'] = float(fig['area'])
    layer = fig.pop('layer')
    if with_masks:
      fig['silhouette'] = _layer_full(layer, height, width)
      covered = np.zeros((height, width), bool)
      for l in later:
        covered |= _layer_full(l, height, width)
      fig['visible'] = fig['silhouette'] & ~covered

  # Mild camera blur and sensor noise.
  if rng.uniform() < 0.5:
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.0))
  positive, negative = _noise_luts(int(rng.integers(20, 61)))
  grain = np.frombuffer(rng.bytes(height * width * 3), np.uint8).reshape(
      height, width, 3)
  img = cv2.subtract(cv2.add(img, cv2.LUT(grain, positive)),
                     cv2.LUT(grain, negative))
  if with_masks:
    for i, fig in enumerate(figures):
      fig['occluder'] = np.zeros((height, width), bool)
      for owner, layer in layers:
        if owner == -1 - i:
          fig['occluder'] = _layer_full(layer, height, width)
  return dict(image=img, background=background, figures=figures)


# ----------------------------------------------------------------------------
# COCO files.


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
  """The generator of one image: depends on nothing but its arguments."""
  split_code = zlib.crc32(split.encode('utf-8'))  # stable, unlike hash()
  return np.random.default_rng(
      np.random.SeedSequence([int(seed), split_code, int(index)]))


def coco_categories() -> list[dict]:
  return [_SPEC.coco_category()]


def _json_number(x: float):
  # Keypoints are multiples of 1/16, so floats print exactly; 0 stays 0.
  x = float(x)
  return int(x) if x.is_integer() else x


def generate_split(root: str, split: str, num_figures: int, seed: int,
                   image_size: tuple[int, int] = (256, 256)) -> dict:
  """Generates one split with exactly `num_figures` annotated figures.

  Writes `root/<split>/<image_id:012d>.jpg` and
  `root/annotations/person_keypoints_<split>.json`.

  Args:
    root: dataset directory.
    split: split name, e.g. 'train'; also selects the random stream.
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
  if min(height, width) < 32:
    raise ValueError(f'image_size must be at least 32x32, got {image_size}.')
  image_dir = os.path.join(root, split)
  os.makedirs(image_dir, exist_ok=True)
  os.makedirs(os.path.join(root, 'annotations'), exist_ok=True)

  images, annotations = [], []
  index = 0
  while len(annotations) < num_figures:
    out = _render_image(image_rng(seed, split, index), (height, width),
                        num_figures - len(annotations))
    index += 1
    if not out['figures']:
      continue  # rare: no placement fitted; images hold at least one figure
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
          bbox=fig['bbox'], area=fig['area'], iscrowd=0,
          num_keypoints=int(np.count_nonzero(fig['visibility'])),
          keypoints=[_json_number(v) for v in flat.reshape(-1)]))

  coco = dict(
      info=dict(description=f'posejax synthetic person keypoints, {split}',
                version=str(_GENERATOR_VERSION)),
      images=images, annotations=annotations, categories=coco_categories())
  path = os.path.join(root, 'annotations', f'person_keypoints_{split}.json')
  with open(path, 'w') as f:
    json.dump(coco, f, separators=(',', ':'))
  return coco


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
  parameters. Otherwise generates 'train' and 'val' into a temporary
  directory next to `root` and renames it into place, so that a killed run
  never leaves a partial dataset that looks complete. An older generation with
  other parameters is replaced; a non-empty `root` without the marker is
  never deleted (it may be real data): that raises instead.

  Returns:
    root.
  """
  params = dict(generator_version=_GENERATOR_VERSION, num_train=int(num_train),
                num_val=int(num_val), seed=int(seed),
                image_size=[int(s) for s in image_size])
  if _read_marker(root) == params:
    return root
  if os.path.isdir(root) and os.listdir(root) and _read_marker(root) is None:
    raise FileExistsError(
        f'{root} is not empty and holds no {_MARKER}, so it is not a posejax '
        'synthetic dataset; remove it or choose another directory.')
  parent, name = os.path.split(os.path.abspath(root))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f'.{name}.partial-', dir=parent)
  try:
    generate_split(tmp, 'train', num_train, seed, image_size)
    generate_split(tmp, 'val', num_val, seed, image_size)
    with open(os.path.join(tmp, _MARKER), 'w') as f:
      json.dump(params, f, indent=2)
    if _read_marker(root) == params:
      shutil.rmtree(tmp)  # another process finished the same data meanwhile
      return root
    if os.path.exists(root):
      # Move the old data aside first: a directory can only be renamed onto
      # an empty one.
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
