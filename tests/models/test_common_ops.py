"""The shared layers written for XLA:CPU's sake give the textbook results."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from posejax.models import common


@pytest.mark.parametrize('shape, window, strides, padding', [
    ((2, 17, 13, 3), (3, 3), (2, 2), ((1, 1), (1, 1))),  # ResNet's stem pool
    ((2, 16, 12, 3), (3, 3), (2, 2), ((1, 1), (1, 1))),
    ((2, 9, 7, 4), (2, 2), (2, 2), ((0, 0), (0, 0))),  # hourglass, odd sides
    ((1, 8, 8, 2), (3, 3), (1, 1), ((1, 1), (1, 1))),
])
def test_max_pool_equals_flax_values_and_gradient(shape, window, strides, padding):
  # Distinct values (no ties), some negative so the -inf padding matters.
  x = jnp.asarray(np.random.default_rng(0).permutation(np.prod(shape))
                  .reshape(shape) - np.prod(shape) / 2, jnp.float32)
  ours = common.max_pool(x, window, strides, padding)
  flax = nn.max_pool(x, window, strides=strides, padding=padding)
  np.testing.assert_array_equal(ours, flax)
  weights = jnp.asarray(np.random.default_rng(1).normal(size=flax.shape), jnp.float32)
  grad = lambda pool: jax.grad(lambda v: (pool(v) * weights).sum())(x)
  np.testing.assert_allclose(
      grad(lambda v: common.max_pool(v, window, strides, padding)),
      grad(lambda v: nn.max_pool(v, window, strides=strides, padding=padding)),
      rtol=1e-6, atol=1e-6)


def test_max_pool_shares_the_gradient_of_a_tie():
  x = jnp.zeros((1, 2, 2, 1))
  grad = jax.grad(lambda v: common.max_pool(v, (2, 2), (2, 2)).sum())(x)
  np.testing.assert_allclose(grad.sum(), 1.0)
  assert np.all(grad >= 0)


def test_aligned_resize_matches_corner_aligned_interpolation():
  # Corner-aligned bilinear interpolation of a linear ramp is the ramp
  # sampled at the aligned positions, on both axes and every channel.
  h, w = 4, 3
  ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing='ij')
  ramp = np.stack([ys * 2.0 + xs, -xs * 1.0], -1)[None].astype(np.float32)
  out = np.asarray(common.resize_bilinear_aligned(jnp.asarray(np.tile(ramp, (2, 1, 1, 1))),
                                                  (7, 5)))
  oy = np.arange(7) * (h - 1) / 6
  ox = np.arange(5) * (w - 1) / 4
  gy, gx = np.meshgrid(oy, ox, indexing='ij')
  expected = np.stack([gy * 2.0 + gx, -gx], -1)
  for image in out:
    np.testing.assert_allclose(image, expected, atol=1e-5)
