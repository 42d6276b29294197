"""Tests for posejax.models.hourglass (Stacked Hourglass).

Numerical equality with PyTorch is in test_torch_equivalence_sb_hg.py.
"""

from __future__ import annotations

import functools

from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from posejax import models
from posejax.models import hourglass as hg
import reference_layouts

# Key, shape, dtype and kind of every entry of the princeton-vl
# pytorch_stacked_hourglass PoseNet state dicts (2 and 8 stacks, 16 joints).
_REFERENCES = {
    'hg2': 'hourglass2_princeton',
    'hg8': 'hourglass8_princeton',
}

SMALL = dict(num_stacks=2, features=8, depth=2)


def _preset_model(preset: str) -> hg.StackedHourglass:
  return hg.StackedHourglass(num_keypoints=16, **hg.HOURGLASS_PRESETS[preset])


@functools.cache
def _abstract_variables(preset: str):
  return jax.eval_shape(_preset_model(preset).init, jax.random.key(0),
                        jnp.zeros((1, 256, 256, 3)))


def _num_elements(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize('preset,expected', [('hg2', 6_570_400),
                                             ('hg8', 25_434_112)])
def test_parameter_count_counts_only_used_parameters(preset, expected):
  variables = _abstract_variables(preset)
  assert _num_elements(variables['params']) == expected
  # The official totals also count the never-used skip layers.
  reference = reference_layouts.read_listing(_REFERENCES[preset])
  unused = sum(int(np.prod(shape)) for shape, _, kind in reference.values()
               if kind == 'param_unused')
  official_total = {'hg2': 8_429_088, 'hg8': 32_819_328}[preset]
  assert expected + unused == official_total


@pytest.mark.parametrize('preset', ['hg2', 'hg8'])
def test_names_and_shapes_map_to_official_keys(preset):
  reference = reference_layouts.read_listing(_REFERENCES[preset])
  official = {key: shape for key, (shape, _, _) in reference.items()
              if not key.endswith('num_batches_tracked')}
  unused = {key for key, (_, _, kind) in reference.items()
            if kind == 'param_unused'}
  assert hg.unused_torch_state_dict_keys(_preset_model(preset)) == unused

  variables = _abstract_variables(preset)
  ours = {}
  for collection in ('params', 'batch_stats'):
    for path, x in traverse_util.flatten_dict(variables[collection]).items():
      # Conv kernels: HWIO (Flax) -> OIHW (PyTorch).
      shape = ((x.shape[3], x.shape[2], x.shape[0], x.shape[1])
               if path[-1] == 'kernel' else x.shape)
      key = hg.torch_state_dict_key(path)
      assert key not in ours, f'{path} and another variable map to {key}'
      ours[key] = shape
  assert sorted(set(ours) - set(official)) == []
  assert sorted(set(official) - set(ours) - unused) == []
  assert not set(ours) & unused
  assert ours == {k: v for k, v in official.items() if k not in unused}


def test_torch_state_dict_key_examples():
  key = hg.torch_state_dict_key
  assert key(('pre_0', 'conv', 'kernel')) == 'pre.0.conv.weight'
  assert key(('pre_0', 'bn', 'var')) == 'pre.0.bn.running_var'
  assert key(('pre_1', 'skip_layer', 'conv', 'bias')) == (
      'pre.1.skip_layer.conv.bias')
  assert key(('hgs_1_0', 'low2', 'low2', 'up1', 'bn1', 'scale')) == (
      'hgs.1.0.low2.low2.up1.bn1.weight')
  assert key(('features_3_1', 'bn', 'mean')) == (
      'features.3.1.bn.running_mean')
  assert key(('outs_7', 'conv', 'kernel')) == 'outs.7.conv.weight'
  assert key(('merge_features_6', 'conv', 'conv', 'bias')) == (
      'merge_features.6.conv.conv.bias')
  with pytest.raises(ValueError, match='embedding'):
    key(('pre_0', 'conv', 'embedding'))


def test_unused_keys_follow_residual_widths():
  # With 128 features `pre.4` keeps its width, so its skip layer is unused
  # too; `pre.1` (64 -> 128) always uses its own.
  unused = hg.unused_torch_state_dict_keys(
      hg.StackedHourglass(num_keypoints=16, num_stacks=1, features=128,
                          depth=1))
  assert unused == {
      f'{prefix}.skip_layer.conv.{leaf}'
      for prefix in ('pre.3', 'pre.4', 'hgs.0.0.up1', 'hgs.0.0.low1',
                     'hgs.0.0.low2', 'hgs.0.0.low3', 'features.0.0')
      for leaf in ('weight', 'bias')}


def _small_model(**overrides):
  return hg.StackedHourglass(num_keypoints=16, **{**SMALL, **overrides})


def _fill_like_init(abstract, seed=0):
  """Concrete variables with PyTorch's default scales, drawn with numpy.

  Compiling threefry draws for every layer takes far longer on CPU than the
  forward pass; the initialisers themselves are tested on single layers in
  `test_initialisation_is_pytorch_default`.
  """
  return reference_layouts.init_like_variables(
      abstract, lambda rng, shape: rng.uniform(
          -1, 1, shape) / np.sqrt(np.prod(shape[:-1])),
      seed, bias_bound=0.1)


@pytest.fixture(scope='module')
def small_variables():
  abstract = jax.eval_shape(_small_model().init, jax.random.key(0),
                            jnp.zeros((1, 64, 48, 3)))
  return _fill_like_init(abstract)


@pytest.fixture(scope='module')
def small_apply():
  return jax.jit(_small_model().apply)


def test_small_forward_shapes_and_structure(small_variables, small_apply):
  x = jax.random.normal(jax.random.key(1), (2, 64, 48, 3))
  outputs = small_apply(small_variables, x)
  assert isinstance(outputs, list) and len(outputs) == 2
  for out in outputs:
    assert out.shape == (2, 16, 12, 16)
    assert out.dtype == jnp.float32
    assert np.all(np.isfinite(out))
  assert not np.allclose(outputs[0], outputs[1])

  params = small_variables['params']
  # Depth 2: `low2` is an hourglass whose own `low2` is a Residual.
  assert set(params['hgs_0_0']) == {'up1', 'low1', 'low2', 'low3'}
  assert set(params['hgs_0_0']['low2']['low2']) == {
      'bn1', 'conv1', 'bn2', 'conv2', 'bn3', 'conv3'}
  # Skip layers only where the width changes (64 -> 128, 128 -> features).
  assert 'skip_layer' in params['pre_1'] and 'skip_layer' in params['pre_4']
  assert 'skip_layer' not in params['pre_3']
  assert params['pre_4']['conv2']['conv']['kernel'].shape == (3, 3, 4, 4)
  # Every conv has a bias; only pre.0 and features.i.1 have their own BN.
  assert params['pre_0']['conv']['kernel'].shape == (7, 7, 3, 64)
  assert params['pre_0']['conv']['bias'].shape == (64,)
  assert set(params['features_1_1']) == {'conv', 'bn'}
  assert set(params['outs_1']) == {'conv'}
  assert params['outs_1']['conv']['kernel'].shape == (1, 1, 8, 16)
  # Merges only between stacks.
  assert params['merge_preds_0']['conv']['conv']['kernel'].shape == (
      1, 1, 16, 8)
  assert 'merge_preds_1' not in params and 'merge_features_1' not in params
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))


def test_supervision_is_reinjected_into_the_next_stack(small_variables,
                                                       small_apply):
  # Same shapes as the other tests: no recompilation.
  x = jax.random.normal(jax.random.key(2), (2, 64, 48, 3))
  first, second = small_apply(small_variables, x)
  params = jax.tree.map(lambda p: p, small_variables['params'])
  # Shifting stack 1's heatmaps changes stack 2 only through merge_preds_0.
  params['outs_0']['conv']['bias'] = params['outs_0']['conv']['bias'] + 1.0
  first_b, second_b = small_apply({**small_variables, 'params': params}, x)
  np.testing.assert_allclose(first_b, first + 1.0, rtol=1e-5, atol=1e-5)
  assert float(jnp.abs(second_b - second).max()) > 1e-3
  # The last stack's head does not feed back into the first.
  params = jax.tree.map(lambda p: p, small_variables['params'])
  params['outs_1']['conv']['bias'] = params['outs_1']['conv']['bias'] + 1.0
  first_c, _ = small_apply({**small_variables, 'params': params}, x)
  np.testing.assert_array_equal(first_c, first)


def test_initialisation_is_pytorch_default():
  key = jax.random.key(0, impl='unsafe_rbg')  # Cheap to compile on CPU.
  block = hg.Residual(128)
  variables = jax.jit(block.init)(key, jnp.zeros((1, 4, 4, 32)))
  params = variables['params']
  # kaiming_uniform_(a=sqrt(5)) and the default bias: both U(+-1/sqrt(fan_in))
  # with fan_in = in_channels * k * k.
  for name, fan_in in (('conv2', 64 * 9), ('skip_layer', 32)):
    bound = 1.0 / np.sqrt(fan_in)
    for leaf, tolerance in (('kernel', 0.05), ('bias', 0.25)):
      value = np.asarray(params[name]['conv'][leaf])
      assert np.abs(value).max() <= bound, (name, leaf)
      # Uniform on [-b, b] has std b / sqrt(3).
      std = value.std() / (bound / np.sqrt(3))
      assert abs(std - 1) < tolerance, (name, leaf, std)
  np.testing.assert_array_equal(params['bn1']['scale'], 1.0)
  np.testing.assert_array_equal(params['bn2']['bias'], 0.0)
  np.testing.assert_array_equal(variables['batch_stats']['bn3']['var'], 1.0)
  assert set(params['skip_layer']) == {'conv'}


@pytest.mark.slow
def test_bfloat16_train_step_returns_float32(small_variables):
  # One compile covers both bf16 compute and train mode.
  model = _small_model(dtype=jnp.bfloat16)
  x = jax.random.normal(jax.random.key(3), (2, 64, 48, 3)) + 1.0
  lowered = jax.jit(functools.partial(
      model.apply, train=True, mutable=['batch_stats'])).lower(
          small_variables, x)
  convs = [line for line in lowered.as_text().splitlines()
           if 'stablehlo.convolution' in line]
  assert convs and all(line.rstrip().endswith('xbf16>') for line in convs)
  outputs, updates = lowered.compile()(small_variables, x)
  assert len(outputs) == 2
  for out in outputs:
    assert out.dtype == jnp.float32
    assert out.shape == (2, 16, 12, 16)
    assert np.all(np.isfinite(out))
  for path in (('pre_0', 'bn'), ('hgs_1_0', 'low2', 'low2', 'bn1'),
               ('features_1_1', 'bn')):
    old = functools.reduce(dict.get, path, small_variables['batch_stats'])
    new = functools.reduce(dict.get, path, updates['batch_stats'])
    assert new['mean'].dtype == jnp.float32
    assert not np.allclose(old['mean'], new['mean']), path


def test_bad_input_size_is_a_clear_error(small_variables):
  with pytest.raises(ValueError, match='divisible by 16'):
    jax.eval_shape(_small_model().apply, small_variables,
                   jnp.zeros((1, 64, 40, 3)))


def test_bad_structure_fails_at_construction():
  with pytest.raises(ValueError, match='even'):
    hg.StackedHourglass(num_keypoints=16, features=15)
  with pytest.raises(ValueError, match='num_stacks'):
    hg.StackedHourglass(num_keypoints=16, num_stacks=0)


def test_build_model_presets():
  model = models.build_model(
      dict(name='hourglass', preset='hg2', dtype='bfloat16', features=128), 16)
  assert isinstance(model, hg.StackedHourglass)
  assert model.num_stacks == 2 and model.features == 128
  assert model.depth == 4 and model.dtype == jnp.bfloat16
  assert models.build_model(
      dict(name='hourglass', preset='hg8'), 16).num_stacks == 8
  with pytest.raises(ValueError, match=r"'hg4'.*'hg2'"):
    models.build_model(dict(name='hourglass', preset='hg4'), 16)


@pytest.mark.parametrize('stride', [1, 2])
def test_smaller_stride_keeps_the_parameters_and_raises_the_resolution(
    stride, small_variables):
  model = _small_model(stride=stride)
  # eval_shape only: no compilation.
  abstract = jax.eval_shape(model.init, jax.random.key(0),
                            jnp.zeros((1, 32, 16, 3)))
  shapes = lambda tree: jax.tree.map(lambda x: x.shape, tree)
  assert shapes(abstract) == shapes(small_variables)
  outputs = jax.eval_shape(model.apply, small_variables,
                           jnp.zeros((2, 32, 16, 3)))
  assert [o.shape for o in outputs] == [(2, 32 // stride, 16 // stride, 16)] * 2
  # Divisibility follows the stride: by stride * 2**depth.
  with pytest.raises(ValueError, match=f'divisible by {stride * 4}'):
    jax.eval_shape(model.apply, small_variables, jnp.zeros((1, 16, 6, 3)))
  with pytest.raises(ValueError, match='stride must be 1, 2 or 4'):
    hg.StackedHourglass(num_keypoints=16, stride=3)
