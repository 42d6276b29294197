"""Resampling: crops of images, with TensorFlow ops and XLA (host CPU).

Evaluation warps whole decoded images with `warp_image`
(`ImageProjectiveTransformV3`); training decodes only the window its crop
samples (`window`) and resamples it with `bilinear_crop`, compiled by XLA,
within one level of the whole-image warp (tests/data/test_pipeline.py).
"""

from __future__ import annotations

import functools
import os

import numpy as np
import tensorflow as tf


def warp_image(image, matrix, output_size):
  """Resamples `image` (H, W, 3) so that input pixel p shows image pixel M^-1 p."""
  inverse = tf.linalg.inv(matrix)
  inverse = inverse / inverse[2, 2]
  transform = tf.reshape(inverse, [-1])[:8]
  warped = tf.raw_ops.ImageProjectiveTransformV3(
      images=tf.cast(image, tf.float32)[None],
      transforms=transform[None],
      output_shape=tf.constant(output_size, tf.int32),
      fill_value=0.0,
      interpolation='BILINEAR',
      fill_mode='CONSTANT')[0]
  return tf.cast(tf.clip_by_value(tf.round(warped), 0, 255), tf.uint8)


def decode(encoded):
  return tf.io.decode_image(encoded, channels=3, expand_animations=False)


def is_jpeg(encoded):
  return tf.strings.substr(encoded, 0, 3) == b'\xff\xd8\xff'


def image_shape(image):
  """(height, width, channels) of a decoded image, or of encoded bytes."""
  if image.dtype != tf.string:
    return tf.shape(image)
  return tf.cond(is_jpeg(image), lambda: tf.io.extract_jpeg_shape(image),
                 lambda: tf.shape(decode(image)))


def window(image, matrix, output_size):
  """The part of an image that a crop samples, as uint8, and the crop's matrix
  for that part.

  A training crop of a person usually covers a fraction of a photo. The
  window is the box around the crop's corners (one pixel beyond the output
  and a two-pixel margin for bilinear sampling), clipped to the image. A JPEG
  is decoded only inside it, with `decode_and_crop_jpeg`, which skips the
  rest of the image; other formats are decoded whole and cut; a decoded image
  (`input.cache_decoded_images`) is cut. Either way the resampling that
  follows converts and reads only the window, and the matrix is shifted to
  the window's origin.
  """
  height, width = output_size
  inverse = tf.linalg.inv(matrix)
  corners = tf.constant([[-1, -1], [width, -1], [-1, height], [width, height]],
                        tf.float32)
  source = tf.linalg.matmul(corners, inverse[:2, :2], transpose_b=True) + inverse[:2, 2]
  low = tf.cast(tf.floor(tf.reduce_min(source, 0)), tf.int32) - 2
  high = tf.cast(tf.math.ceil(tf.reduce_max(source, 0)), tf.int32) + 2

  def bounds(shape):
    limit = tf.stack([shape[1], shape[0]]) - 1  # (x, y) of the last pixel
    start = tf.clip_by_value(low, 0, limit)
    end = tf.clip_by_value(high, start, limit)
    return start, end - start + 1

  def cut(decoded):
    start, size = bounds(tf.shape(decoded))
    return (tf.slice(decoded, tf.stack([start[1], start[0], 0]),
                     tf.stack([size[1], size[0], 3])), start)

  def jpeg_window():
    start, size = bounds(tf.io.extract_jpeg_shape(image))
    crop_window = tf.stack([start[1], start[0], size[1], size[0]])
    return tf.io.decode_and_crop_jpeg(image, crop_window, channels=3), start

  if image.dtype == tf.string:
    part, start = tf.cond(is_jpeg(image), jpeg_window, lambda: cut(decode(image)))
  else:
    part, start = cut(image)
  shift = tf.tensor_scatter_nd_update(tf.eye(3), [[0, 2], [1, 2]],
                                      tf.cast(start, tf.float32))
  return part, tf.linalg.matmul(matrix, shift)


# The resampler's input is padded to a few lengths (`bucket_rows`), so
# that XLA compiles it for a dozen shapes rather than one per window size.
MIN_ROWS = 4096


def bucket_rows(pixels):
  """Rows for a window of `pixels` pixels: at least one zero row past them
  (the fill), rounded up to 2^k or 1.5 * 2^k (at least `MIN_ROWS`)."""
  rows = tf.cast(pixels + 1, tf.float64)  # exact: float32 is not above 2^24
  octave = tf.math.ceil(tf.math.log(rows) / np.log(2.0))
  bucket = tf.where(rows <= 0.75 * 2.0**octave, 0.75 * 2.0**octave, 2.0**octave)
  # Never short of the rows, whatever the logarithm's last bit.
  return tf.maximum(tf.cast(bucket, tf.int32), tf.maximum(pixels + 1, MIN_ROWS))


def crop_window(image, matrix, output_size):
  """The training crop: the window it samples (`window`), resampled by
  `bilinear_crop`."""
  pixels_of, shifted = window(image, matrix, output_size)
  shape = tf.shape(pixels_of)
  pixels = shape[0] * shape[1]
  flat = tf.pad(tf.reshape(pixels_of, [-1, 3]), [[0, bucket_rows(pixels) - pixels], [0, 0]])
  return bilinear_crop(flat, shape[:2], tf.linalg.inv(shifted), tuple(output_size))


@functools.cache
def start_tensorflow_xla() -> None:
  """Starts TensorFlow's XLA without the flags in $XLA_FLAGS.

  TensorFlow's XLA reads XLA_FLAGS once, at its first compilation, and
  aborts the process on a flag it does not know. Those flags are meant for
  JAX, whose XLA is another version with other flags (and `import posejax`
  adds XLA:CPU ones), so TensorFlow's starts with none; the variable is back
  as it was before this returns, and JAX reads it as usual.
  """
  flags = os.environ.pop('XLA_FLAGS', None)
  try:
    tf.function(lambda x: x + 1, jit_compile=True)(tf.constant(0))
  finally:
    if flags is not None:
      os.environ['XLA_FLAGS'] = flags


@tf.function(jit_compile=True, reduce_retracing=True)
def bilinear_crop(flat, size, inverse, output_size):
  """`warp_image` of a window given as rows of pixels, compiled by XLA.

  flat: (N, 3) uint8, the window's h * w pixels row-major, then zero rows
  (N > h * w); size: (h, w); inverse: 3x3, output pixels -> window pixels.
  Bilinear samples with a constant zero fill, as `ImageProjectiveTransformV3`
  gives them (within one level: rounding), about three times faster on a CPU
  core, rotated or not: TensorFlow's kernel computes every output value
  through a generic per-element generator, XLA fuses the sampling into one
  loop of gathers. XLA compiles once per length N, which the caller rounds
  up to a few buckets.
  """
  out_h, out_w = output_size
  h, w = size[0], size[1]
  ys, xs = tf.meshgrid(tf.range(out_h, dtype=tf.float32),
                       tf.range(out_w, dtype=tf.float32), indexing='ij')
  # Source positions, clipped to a pixel beyond the window (all fill) so
  # that far-away crops cannot overflow the integer indices.
  sx = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
  sy = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
  sx = tf.clip_by_value(sx, -2.0, tf.cast(w + 1, tf.float32))
  sy = tf.clip_by_value(sy, -2.0, tf.cast(h + 1, tf.float32))
  x0, y0 = tf.floor(sx), tf.floor(sy)
  fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
  x0, y0 = tf.cast(x0, tf.int32), tf.cast(y0, tf.int32)

  def tap(y, x):
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    row = tf.where(inside, y * w + x, h * w)  # row h * w is zero: the fill
    return tf.cast(tf.gather(flat, row), tf.float32)

  top = tap(y0, x0) * (1.0 - fx) + tap(y0, x0 + 1) * fx
  bottom = tap(y0 + 1, x0) * (1.0 - fx) + tap(y0 + 1, x0 + 1) * fx
  value = top * (1.0 - fy) + bottom * fy
  return tf.cast(tf.clip_by_value(tf.round(value), 0, 255), tf.uint8)
