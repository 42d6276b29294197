"""Tests for posejax.models (HRNet, shared blocks, build_model)."""

from __future__ import annotations

import collections
import functools
import subprocess
import sys

from flax import traverse_util
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from posejax import models
from posejax.models import common
from posejax.models import hrnet
import reference_layouts

# Key, shape, dtype and kind of every entry of the official
# deep-high-resolution-net.pytorch HRNet-W32 state dict (random weights).
_REFERENCE = 'hrnet_w32_official'

NARROW = dict(widths=(8, 16, 32), num_modules=(1, 1), num_blocks=1,
              stem_width=16, stage1_blocks=1)


@functools.cache
def _abstract_variables(preset: str, height: int = 256, width: int = 192):
  model = hrnet.HRNet(num_keypoints=17, **hrnet.HRNET_PRESETS[preset])
  return jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, height, width, 3))))


def _num_elements(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def _torch_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
  # Conv kernels: HWIO (Flax) -> OIHW (PyTorch).
  if len(shape) == 4:
    return (shape[3], shape[2], shape[0], shape[1])
  return tuple(shape)


@pytest.mark.slow
@pytest.mark.parametrize('preset,expected', [('w32', 28_536_113),
                                             ('w48', 63_595_745)])
def test_parameter_count_matches_official(preset, expected):
  variables = _abstract_variables(preset)
  assert _num_elements(variables['params']) == expected


def test_w32_parameter_shapes_match_official_state_dict():
  reference = reference_layouts.read_listing(_REFERENCE)
  official = collections.Counter(
      shape for shape, _, kind in reference.values() if kind == 'param')
  variables = _abstract_variables('w32')
  ours = collections.Counter(
      _torch_shape(x.shape) for x in jax.tree.leaves(variables['params']))
  assert ours == official

  # batch_stats <-> running_mean / running_var buffers.
  official_stats = [shape for key, (shape, _, _) in reference.items()
                    if key.endswith(('.running_mean', '.running_var'))]
  stats = jax.tree.leaves(variables['batch_stats'])
  assert len(stats) == len(official_stats)
  assert _num_elements(stats) == sum(int(np.prod(s)) for s in official_stats)


def test_w32_names_map_to_official_keys():
  reference = reference_layouts.read_listing(_REFERENCE)
  official = {key: shape for key, (shape, _, _) in reference.items()
              if not key.endswith('num_batches_tracked')}
  variables = _abstract_variables('w32')
  ours = {}
  for collection in ('params', 'batch_stats'):
    flat = traverse_util.flatten_dict(variables[collection])
    for path, x in flat.items():
      ours[hrnet.torch_state_dict_key(path)] = _torch_shape(x.shape)
  assert sorted(set(ours) - set(official)) == []
  assert sorted(set(official) - set(ours)) == []
  assert ours == official


def test_torch_state_dict_key_examples():
  key = hrnet.torch_state_dict_key
  assert key(('conv1', 'kernel')) == 'conv1.weight'
  assert key(('layer1_0', 'downsample', 'bn', 'var')) == (
      'layer1.0.downsample.1.running_var')
  assert key(('transition1_1_0', 'conv', 'kernel')) == (
      'transition1.1.0.0.weight')
  assert key(('stage3_2', 'branches_1_3', 'bn2', 'scale')) == (
      'stage3.2.branches.1.3.bn2.weight')
  assert key(('stage4_0', 'fuse_layers_3_0_2', 'bn', 'bias')) == (
      'stage4.0.fuse_layers.3.0.2.1.bias')
  assert key(('final_layer', 'bias')) == 'final_layer.bias'


def _narrow_model(**overrides):
  return hrnet.HRNet(num_keypoints=17, **{**NARROW, **overrides})


def _apply(model, variables, x, train=False):
  """Jitted apply (op-by-op execution of a whole HRNet is slow on CPU)."""
  if train:
    return jax.jit(functools.partial(
        model.apply, train=True, mutable=['batch_stats']))(variables, x)
  return jax.jit(model.apply)(variables, x)


def _fill_like_init(abstract, seed=0):
  """Concrete variables with the initialisers' distributions, from numpy.

  XLA:CPU takes ~2 s to compile each threefry draw, so a jitted `model.init`
  of even a tiny HRNet compiles for ~40 s; the initialisers themselves are
  tested on a single block in `test_initialisation_follows_official_init`.
  """
  return reference_layouts.init_like_variables(
      abstract, lambda rng, shape: rng.normal(0.0, 0.001, shape),
      seed)


@pytest.fixture(scope='module')
def narrow_variables():
  model = _narrow_model()
  abstract = jax.eval_shape(model.init, jax.random.key(0),
                            jnp.zeros((1, 64, 48, 3)))
  return _fill_like_init(abstract)


def test_narrow_forward_shape_and_dtype(narrow_variables):
  model = _narrow_model()
  x = jax.random.normal(jax.random.key(1), (2, 64, 48, 3))
  outputs = _apply(model, narrow_variables, x)
  assert isinstance(outputs, list) and len(outputs) == 1
  assert outputs[0].shape == (2, 16, 12, 17)
  assert outputs[0].dtype == jnp.float32
  assert np.all(np.isfinite(outputs[0]))


def test_narrow_structure(narrow_variables):
  params = narrow_variables['params']
  # Stage 1 Bottleneck: 16 planes -> 64 channels, with projection shortcut.
  assert params['layer1_0']['conv3']['kernel'].shape == (1, 1, 16, 64)
  assert params['layer1_0']['downsample']['conv']['kernel'].shape == (
      1, 1, 16, 64)
  # Transition 1: 64 -> 8 on branch 0, new stride-2 branch 64 -> 16.
  assert params['transition1_0']['conv']['kernel'].shape == (3, 3, 64, 8)
  assert params['transition1_1_0']['conv']['kernel'].shape == (3, 3, 64, 16)
  assert params['transition2_2_0']['conv']['kernel'].shape == (3, 3, 16, 32)
  assert 'transition2_0' not in params and 'transition2_1' not in params
  # Last module of the last stage fuses into branch 0 only.
  last = params['stage3_0']
  assert set(k for k in last if k.startswith('fuse')) == {
      'fuse_layers_0_1', 'fuse_layers_0_2'}
  assert set(k for k in params['stage2_0'] if k.startswith('fuse')) == {
      'fuse_layers_0_1', 'fuse_layers_1_0_0'}
  # No bias on convs followed by BN; the final layer has one.
  assert 'bias' not in params['conv1']
  assert params['final_layer']['bias'].shape == (17,)
  # Parameters are float32 whatever the compute dtype.
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))


def test_initialisation_follows_official_init_weights():
  block = common.BasicBlock(32, strides=2, downsample=True)
  key = jax.random.key(0, impl='unsafe_rbg')  # Cheap to compile on CPU.
  variables = jax.jit(block.init)(key, jnp.zeros((1, 8, 8, 16)))
  params = variables['params']
  for name in ('conv1', 'conv2'):
    kernel = np.asarray(params[name]['kernel'])
    assert 0.0008 < kernel.std() < 0.0012, name
    assert 'bias' not in params[name]
  assert params['downsample']['conv']['kernel'].shape == (1, 1, 16, 32)
  np.testing.assert_array_equal(params['bn1']['scale'], 1.0)
  np.testing.assert_array_equal(params['bn1']['bias'], 0.0)
  np.testing.assert_array_equal(variables['batch_stats']['bn2']['mean'], 0.0)
  np.testing.assert_array_equal(variables['batch_stats']['bn2']['var'], 1.0)
  head = common.conv(17, 1, use_bias=True)
  head_params = jax.jit(head.init)(key, jnp.zeros((1, 4, 4, 32)))['params']
  np.testing.assert_array_equal(head_params['bias'], 0.0)


def test_train_mode_updates_batch_stats(narrow_variables):
  model = _narrow_model()
  x = jax.random.normal(jax.random.key(2), (2, 64, 48, 3)) + 3.0
  outputs, updates = _apply(model, narrow_variables, x, train=True)
  assert outputs[0].shape == (2, 16, 12, 17)
  old = narrow_variables['batch_stats']['bn1']['mean']
  new = updates['batch_stats']['bn1']['mean']
  assert not np.allclose(old, new)
  # PyTorch momentum 0.1: running = 0.9 * running + 0.1 * batch statistic.
  conv1 = common.conv(16, 3, strides=2).apply(
      {'params': narrow_variables['params']['conv1']}, x)
  np.testing.assert_allclose(new, 0.9 * old + 0.1 * conv1.mean((0, 1, 2)),
                             rtol=1e-4, atol=1e-6)
  # Unchanged structure; eval mode does not touch the statistics.
  assert (jax.tree.structure(updates['batch_stats']) ==
          jax.tree.structure(narrow_variables['batch_stats']))
  _, eval_updates = jax.jit(functools.partial(
      model.apply, train=False, mutable=['batch_stats']))(narrow_variables, x)
  jax.tree.map(np.testing.assert_array_equal, eval_updates['batch_stats'],
               narrow_variables['batch_stats'])


def test_bfloat16_compute_returns_float32(narrow_variables):
  model = _narrow_model(dtype=jnp.bfloat16)
  x = jax.random.normal(jax.random.key(3), (2, 64, 48, 3))
  (out_bf16,), _ = _apply(model, narrow_variables, x, train=True)
  assert out_bf16.dtype == jnp.float32
  assert out_bf16.shape == (2, 16, 12, 17)
  # Same parameters, same function up to bf16 rounding.
  (out_f32,), _ = _apply(_narrow_model(), narrow_variables, x, train=True)
  scale = float(jnp.abs(out_f32).max())
  assert scale > 0
  error = float(jnp.abs(out_bf16 - out_f32).max())
  assert 0 < error < 0.1 * scale  # > 0: the compute really ran in bf16.


def test_output_depends_on_input(narrow_variables):
  model = _narrow_model()
  x = jax.random.normal(jax.random.key(4), (1, 64, 48, 3))
  apply = jax.jit(model.apply)
  a = apply(narrow_variables, x)[0]
  b = apply(narrow_variables, x.at[:, 40:, 30:, :].add(1.0))[0]
  # Outputs are tiny at initialisation (std-0.001 convs): compare relatively.
  scale = float(jnp.abs(a).max())
  assert scale > 0
  assert float(jnp.abs(a - b).max()) > 1e-3 * scale
  # Every branch is used: the lowest-resolution features reach the output.
  params = jax.tree.map(lambda p: p, narrow_variables['params'])
  fuse = params['stage3_0']['fuse_layers_0_2']['bn']
  params['stage3_0']['fuse_layers_0_2']['bn'] = {
      'scale': fuse['scale'], 'bias': fuse['bias'] + 1.0}
  c = apply({**narrow_variables, 'params': params}, x)[0]
  assert float(jnp.abs(a - c).max()) > 1e-3 * scale


def test_bad_input_size_is_a_clear_error(narrow_variables):
  model = _narrow_model()
  with pytest.raises(ValueError, match='divisible by 16'):
    jax.eval_shape(model.apply, narrow_variables, jnp.zeros((1, 72, 48, 3)))


def test_inconsistent_structure_fails_at_construction():
  with pytest.raises(ValueError, match='num_modules'):
    hrnet.HRNet(num_keypoints=17, widths=(8, 16, 32), num_modules=(1, 1, 1))


def test_stride2_conv_matches_pytorch_alignment():
  # A centre-tap 3x3 kernel with PyTorch padding 1 and stride 2 samples input
  # pixels (2i, 2j); 'SAME' would sample (2i + 1, 2j + 1) on even sizes.
  layer = common.conv(1, 3, strides=2)
  x = jnp.arange(8 * 6, dtype=jnp.float32).reshape(1, 8, 6, 1)
  kernel = jnp.zeros((3, 3, 1, 1)).at[1, 1, 0, 0].set(1.0)
  y = layer.apply({'params': {'kernel': kernel}}, x)
  assert y.shape == (1, 4, 3, 1)
  np.testing.assert_array_equal(y, x[:, ::2, ::2, :])


def test_normalize_images():
  images = jnp.array([[[[0, 128, 255]]]], jnp.uint8)
  out = common.normalize_images(images)
  assert out.dtype == jnp.float32
  expected = (np.array([0, 128, 255]) / 255.0 - np.array(common.IMAGENET_MEAN)
             ) / np.array(common.IMAGENET_STD)
  np.testing.assert_allclose(out[0, 0, 0], expected, rtol=1e-6)


def test_each_network_gets_the_input_it_was_trained_on():
  images = jnp.array([[[[0, 128, 255]]]], jnp.uint8)
  hourglass = models.build_model(dict(name='hourglass', dtype='bfloat16'), 16)
  x = common.model_inputs(hourglass, images)
  assert x.dtype == jnp.bfloat16  # the model's compute dtype
  np.testing.assert_allclose(np.asarray(x, np.float32)[0, 0, 0],
                             np.array([0, 128, 255]) / 255.0, rtol=1e-2)
  hrnet_model = models.build_model(dict(name='hrnet'), 17)
  np.testing.assert_array_equal(common.model_inputs(hrnet_model, images),
                                common.normalize_images(images))
  with pytest.raises(ValueError, match='Unknown image normalisation'):
    common.normalize_images(images, 'caffe')


def test_build_model_from_config_dict():
  config = ml_collections.ConfigDict(dict(
      name='hrnet', dtype='bfloat16', preset='w18', num_blocks=2,
      num_modules=[1, 2, 2]))
  model = models.build_model(config, num_keypoints=21)
  assert isinstance(model, hrnet.HRNet)
  assert model.widths == (18, 36, 72, 144)
  assert model.num_modules == (1, 2, 2)
  assert model.num_blocks == 2
  assert model.num_keypoints == 21
  assert model.dtype == jnp.bfloat16
  # A config field overrides the preset.
  model = models.build_model(
      dict(name='hrnet', dtype='float32', preset='w48', widths=(4, 8, 16, 32)),
      num_keypoints=17)
  assert model.widths == (4, 8, 16, 32)


def test_build_model_unknown_name():
  with pytest.raises(ValueError, match=r"'hrnett'.*'hrnet'"):
    models.build_model(dict(name='hrnett', dtype='float32'), 17)


def test_build_model_unknown_field():
  with pytest.raises(ValueError, match=r"num_module\b.*num_modules"):
    models.build_model(dict(name='hrnet', dtype='float32', num_module=(1, 1)),
                       17)


def test_build_model_unknown_preset_and_dtype():
  with pytest.raises(ValueError, match=r"'w64'.*'w32'"):
    models.build_model(dict(name='hrnet', preset='w64'), 17)
  with pytest.raises(ValueError, match=r"'float64'.*'bfloat16'"):
    models.build_model(dict(name='hrnet', dtype='float64'), 17)


@pytest.mark.slow
def test_models_import_without_tensorflow():
  # Everything a GPU benchmark or a checkpoint import needs stays TF-free.
  code = ('import sys, posejax.models, posejax.codecs, posejax.losses, '
          'posejax.train_step, posejax.predict, posejax.benchmark, '
          'posejax.checkpoints.official, posejax.checkpoints.imagenet, '
          'posejax.experiment, posejax.geometry, '
          'posejax.models.summary; '
          'assert "tensorflow" not in sys.modules, "tensorflow imported"')
  subprocess.run([sys.executable, '-c', code], check=True)
