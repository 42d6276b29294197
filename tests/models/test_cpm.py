"""Tests for posejax.models.cpm (Convolutional Pose Machines)."""

from __future__ import annotations

import functools

from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from posejax import models
from posejax.models import cpm
import reference_layouts

TINY = dict(num_stages=2, feat_channels=8, middle_channels=4, stem_channels=8,
            stem_hidden_channels=16)


def _num_elements(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@functools.cache
def _abstract_variables(num_keypoints=17, height=256, width=192, **fields):
  model = cpm.CPM(num_keypoints=num_keypoints, **fields)
  return jax.eval_shape(model.init, jax.random.key(0),
                        jnp.zeros((1, height, width, 3)))


def _expected_parameters(k, stages, feat=128, middle=32, stem=128, hidden=512):
  """MMPose's CPM counted layer by layer (conv weights + BN scale/bias)."""
  def conv_bn(cin, cout, ksize):
    return cin * cout * ksize * ksize + 2 * cout

  def conv_bias(cin, cout):
    return cin * cout + cout

  image = conv_bn(3, stem, 9) + 2 * conv_bn(stem, stem, 9)
  stage1 = (image + conv_bn(stem, 32, 5) + conv_bn(32, hidden, 9) +
            conv_bn(hidden, hidden, 1) + conv_bias(hidden, k))
  later = (conv_bn(stem, middle, 5) + conv_bn(middle + k, feat, 11) +
           2 * conv_bn(feat, feat, 11) + conv_bn(feat, feat, 1) +
           conv_bias(feat, k))
  return stage1 + (image + (stages - 1) * later if stages > 1 else 0)


def test_parameter_count_matches_mmpose():
  variables = _abstract_variables()
  count = _num_elements(variables['params'])
  assert count == 31_304_166
  assert f'{count / 1e6:.1f}M' == '31.3M'  # The reference figure.
  assert count == _expected_parameters(17, 6)
  # The formula also holds off the defaults (e.g. 16 MPII joints, 3 stages).
  variables = _abstract_variables(16, num_stages=3, feat_channels=64)
  assert _num_elements(variables['params']) == _expected_parameters(
      16, 3, feat=64)


def test_structure_mirrors_mmpose():
  params = _abstract_variables()['params']
  assert params['stem_0']['conv']['kernel'].shape == (9, 9, 3, 128)
  assert params['stem_6']['conv']['kernel'].shape == (5, 5, 128, 32)
  assert params['stem_7']['conv']['kernel'].shape == (9, 9, 32, 512)
  assert params['middle_4']['conv']['kernel'].shape == (9, 9, 128, 128)
  # Stage input: previous beliefs (17) + reduced shared features (32).
  assert params['cpm_stages_0']['model_0']['conv']['kernel'].shape == (
      11, 11, 49, 128)
  assert params['cpm_stages_4']['model_2']['conv']['kernel'].shape == (
      11, 11, 128, 128)
  assert 'cpm_stages_5' not in params
  # Belief-map outputs: bias, no BN; every other conv: BN, no bias.
  assert set(params['stem_9']) == {'conv'}
  assert params['out_convs_4_1']['conv']['bias'].shape == (17,)
  assert set(params['out_convs_4_0']) == {'conv', 'bn'}
  assert 'bias' not in params['middle_conv_0_0']['conv']
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))


def test_torch_state_dict_keys():
  key = cpm.torch_state_dict_key
  assert key(('stem_0', 'conv', 'kernel')) == 'stem.0.conv.weight'
  assert key(('stem_9', 'conv', 'bias')) == 'stem.9.conv.bias'
  assert key(('middle_4', 'bn', 'mean')) == 'middle.4.bn.running_mean'
  assert key(('middle_conv_3_0', 'bn', 'scale')) == (
      'middle_conv.3.0.bn.weight')
  assert key(('cpm_stages_0', 'model_2', 'conv', 'kernel')) == (
      'cpm_stages.0.model.2.conv.weight')
  assert key(('out_convs_4_1', 'conv', 'bias')) == 'out_convs.4.1.conv.bias'
  # Keys are unique: (7 stem + 3 middle + 5 * 6) convs, BN on all but 6.
  variables = _abstract_variables()
  keys = {key(p) for c in ('params', 'batch_stats')
          for p in traverse_util.flatten_dict(variables[c])}
  convs = 7 + 3 + 5 * 6
  assert len(keys) == convs + (convs - 6) * 4 + 6


@pytest.mark.parametrize('stages', [1, 6])
def test_one_output_per_stage_at_stride_8(stages):
  model = cpm.CPM(num_keypoints=17, num_stages=stages)
  x = jax.ShapeDtypeStruct((2, 256, 192, 3), jnp.float32)
  variables = _abstract_variables(num_stages=stages)
  outputs = jax.eval_shape(model.apply, variables, x)
  assert isinstance(outputs, list) and len(outputs) == stages
  for out in outputs:
    assert out.shape == (2, 32, 24, 17) and out.dtype == jnp.float32
  # MPII's 368x368 gives MMPose's 46x46.
  outputs = jax.eval_shape(model.apply, variables,
                           jax.ShapeDtypeStruct((1, 368, 368, 3), jnp.float32))
  assert outputs[-1].shape == (1, 46, 46, 17)


def test_bad_configuration_is_a_clear_error():
  with pytest.raises(ValueError, match='num_stages'):
    cpm.CPM(num_keypoints=17, num_stages=0)
  model = cpm.CPM(num_keypoints=17, **TINY)
  variables = _abstract_variables(height=32, width=24, **TINY)
  with pytest.raises(ValueError, match='divisible by 8'):
    jax.eval_shape(model.apply, variables, jnp.zeros((1, 36, 24, 3)))


def test_build_model_preset():
  model = models.build_model(dict(name='cpm', preset='cpm6',
                                  dtype='bfloat16'), num_keypoints=16)
  assert isinstance(model, cpm.CPM)
  assert model.num_stages == 6 and model.num_keypoints == 16
  assert model.dtype == jnp.bfloat16
  model = models.build_model(dict(name='cpm', num_stages=3), 17)
  assert model.num_stages == 3 and model.feat_channels == 128


@pytest.fixture(scope='module')
def tiny_variables():
  return reference_layouts.random_variables(
      _abstract_variables(5, 32, 24, **TINY), kernel_gain=2.0)


def test_tiny_forward_train_and_bfloat16(tiny_variables):
  x = jax.random.normal(jax.random.key(0), (2, 32, 24, 3))

  @functools.partial(jax.jit, static_argnums=0)
  def train_apply(dtype, variables, x):
    model = cpm.CPM(num_keypoints=5, dtype=dtype, **TINY)
    return model.apply(variables, x, train=True, mutable=['batch_stats'])

  outputs, updates = train_apply(jnp.float32, tiny_variables, x)
  assert len(outputs) == 2
  assert all(o.shape == (2, 4, 3, 5) and o.dtype == jnp.float32
             for o in outputs)
  assert all(np.all(np.isfinite(o)) for o in outputs)
  # Stage 2 refines stage 1: different maps from the same features.
  assert not np.allclose(outputs[0], outputs[1])
  # Training updates every BN's statistics (PyTorch momentum 0.1).
  old = tiny_variables['batch_stats']['cpm_stages_0']['model_0']['bn']['mean']
  new = updates['batch_stats']['cpm_stages_0']['model_0']['bn']['mean']
  assert not np.allclose(old, new)

  bf16, _ = train_apply(jnp.bfloat16, tiny_variables, x)
  for out_bf16, out_f32 in zip(bf16, outputs):
    assert out_bf16.dtype == jnp.float32
    scale = float(jnp.abs(out_f32).max())
    error = float(jnp.abs(out_bf16 - out_f32).max())
    assert 0 < error < 0.1 * scale  # > 0: the compute really ran in bf16.


def test_tiny_forward_depends_on_previous_beliefs(tiny_variables):
  model = cpm.CPM(num_keypoints=5, **TINY)
  x = jax.random.normal(jax.random.key(1), (1, 32, 24, 3))
  apply = jax.jit(model.apply)
  a = apply(tiny_variables, x)
  # Changing only stage 1's belief-map bias changes stage 2 through the
  # concatenation, not just stage 1.
  params = jax.tree.map(lambda p: p, tiny_variables['params'])
  params['stem_9']['conv']['bias'] = params['stem_9']['conv']['bias'] + 1.0
  b = apply({**tiny_variables, 'params': params}, x)
  np.testing.assert_allclose(b[0], a[0] + 1.0, rtol=1e-5, atol=1e-5)
  assert float(jnp.abs(a[1] - b[1]).max()) > 1e-3
