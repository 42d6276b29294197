"""Crop geometry: instance box -> centre/scale, the crop matrix and its inverse.

The one definition of how a top-down crop relates image pixels to network
input pixels, used by the tf.data pipeline (which warps images with it) and
by prediction (which maps keypoints back to the image). Points are (x, y) in
0-based pixels, the centre of the top-left pixel at (0, 0) (docs/conventions.md).

The functions that the pipeline runs inside tf.data take an array namespace
`xp`, numpy (the default) or tensorflow: both provide the few functions used
here (`stack`, `where`, `cos`, `sin`, `tensordot`) under the same names, so
the same expressions build the crop in either, and this module imports
neither TensorFlow nor JAX. Callers pass float32 arrays (and a bool `flip`).
"""

from __future__ import annotations

import math

import numpy as np

# How a crop box fills the network input (`input.crop`): 'centred' puts its
# centre on the input's centre, (W-1)/2, and its edges on the input's pixel
# edges (-0.5 and W-0.5), so that a mirrored crop is the array mirrored;
# 'official' puts the centre on W/2, as `get_affine_transform` of the
# official HRNet and SimpleBaselines code does (half an input pixel right and
# down); 'udp' (Huang et al., "The Devil is in the Details: Delving into
# Unbiased Data Processing for Human Pose Estimation", CVPR 2020) measures
# the input in pixel spacings: the centre on (W-1)/2 and the box's edges on
# the first and last pixel centres (0 and W-1).
CROPS = ('centred', 'official', 'udp')


def crop_centre(size: int, crop: str = 'centred') -> float:
  """Input coordinate of the crop centre along an axis of `size` pixels."""
  if crop not in CROPS:
    raise ValueError(f'input.crop must be one of {CROPS}, got {crop!r}.')
  return size / 2.0 if crop == 'official' else (size - 1) / 2.0


def crop_span(size: int, crop: str = 'centred') -> float:
  """Input units that the crop box spans along an axis of `size` pixels."""
  crop_centre(size, crop)  # checks `crop`
  return size - 1.0 if crop == 'udp' else float(size)


def fix_aspect(w, h, aspect_ratio: float, xp=np):
  """(w, h) grown on the short side so that w / h == aspect_ratio."""
  wide = w > aspect_ratio * h
  return xp.stack([xp.where(wide, w, h * aspect_ratio),
                   xp.where(wide, w / aspect_ratio, h)])


def box_to_center_scale(bbox, aspect_ratio: float, padding: float, xp=np):
  """(x, y, w, h) -> centre (2,) and crop size (2,) in image pixels.

  The crop keeps the network input's aspect ratio (w / h) by growing the short
  side, then is enlarged by `padding` (1.25 in HRNet/SimpleBaselines) so that
  limbs at the box border keep some context.
  """
  x, y, w, h = bbox[0], bbox[1], bbox[2], bbox[3]
  center = xp.stack([x + 0.5 * w, y + 0.5 * h])
  return center, fix_aspect(w, h, aspect_ratio, xp) * padding


def crop_matrix(center, scale, rotation_deg, output_size, flip=False, xp=np,
                crop: str = 'centred'):
  """3x3 matrix taking image pixels to input pixels.

  The crop of size `scale` (w, h) centred on `center` fills an output of
  `output_size` (height, width): with `crop='centred'` its edges land on the
  output's pixel edges (-0.5 and W - 0.5). The crop is rotated by
  `rotation_deg` about its centre and, if `flip`, mirrored:

    x_out = cx_out + mirror * sx * ( cos*dx + sin*dy)
    y_out = cy_out +          sy * (-sin*dx + cos*dy),   d = p - center

  with sx = W / scale_w, sy = H / scale_h ((W-1) / scale_w and (H-1) /
  scale_h for 'udp', `crop_span`) and (cx_out, cy_out) the crop centre in
  the output: ((W-1)/2, (H-1)/2), or (W/2, H/2) for the official code's crop
  (`crop_centre`).
  """
  out_h, out_w = output_size
  theta = rotation_deg * (math.pi / 180.0)
  cos, sin = xp.cos(theta), xp.sin(theta)
  sx = crop_span(out_w, crop) / scale[0]
  sy = crop_span(out_h, crop) / scale[1]
  mirror = xp.where(flip, -1.0, 1.0)
  a = xp.stack([mirror * sx * cos, mirror * sx * sin])
  b = xp.stack([-sy * sin, sy * cos])
  tx = crop_centre(out_w, crop) - xp.tensordot(a, center, 1)
  ty = crop_centre(out_h, crop) - xp.tensordot(b, center, 1)
  return xp.stack([
      xp.stack([a[0], a[1], tx]),
      xp.stack([b[0], b[1], ty]),
      xp.stack([0.0, 0.0, 1.0]),
  ])


def input_to_image(keypoints, center, scale, input_size,
                   crop: str = 'centred') -> np.ndarray:
  """Inverse of the unrotated, unflipped `crop_matrix`: input -> image pixels.

  Batched numpy: keypoints (N, K, 2); center, scale (N, 2) in image pixels;
  input_size (H, W). Solves the matrix's two rows for dx, dy with rotation 0.
  """
  out_h, out_w = input_size
  half = np.array([crop_centre(out_w, crop), crop_centre(out_h, crop)], np.float32)
  span = np.array([crop_span(out_w, crop), crop_span(out_h, crop)], np.float32)
  per_pixel = np.asarray(scale, np.float32) / span
  return ((np.asarray(keypoints) - half) * per_pixel[:, None, :]
          + np.asarray(center, np.float32)[:, None, :])


def clip_box_official(bbox, image_width, image_height, xp=np):
  """An annotated box as the official COCO loader cleans it (`clean_bbox`).

  deep-high-resolution-net.pytorch (lib/dataset/coco.py) clips the box to the
  image and shortens it by a pixel: x1 = max(0, x), x2 = min(W - 1,
  x1 + max(0, w - 1)), the same in y, and uses (x1, y1, x2 - x1, y2 - y1).
  """
  x, y, w, h = bbox[0], bbox[1], bbox[2], bbox[3]
  x1 = xp.maximum(x, 0.0)
  y1 = xp.maximum(y, 0.0)
  x2 = xp.minimum(image_width - 1.0, x1 + xp.maximum(w - 1.0, 0.0))
  y2 = xp.minimum(image_height - 1.0, y1 + xp.maximum(h - 1.0, 0.0))
  return xp.stack([x1, y1, x2 - x1, y2 - y1])
