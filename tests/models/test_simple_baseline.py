"""Tests for posejax.models.simple_baseline (SimpleBaselines, ResNet + deconv).

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
from posejax.models import common
from posejax.models import simple_baseline as sb
import reference_layouts

# Key, shape, dtype and kind of every entry of the official
# human-pose-estimation.pytorch SimpleBaseline-R50 state dict (17 joints).
_REFERENCE = 'simple_baseline_r50_official'

NARROW = dict(width=4, deconv_features=(8, 8, 8))


@functools.cache
def _abstract_variables(preset: str):
  model = sb.SimpleBaseline(num_keypoints=17,
                            **sb.SIMPLE_BASELINE_PRESETS[preset])
  return jax.eval_shape(model.init, jax.random.key(0),
                        jnp.zeros((1, 256, 192, 3)))


def _num_elements(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


# R50 is the official listing's total; R101 and R152 are torchvision's ResNet
# counts without `fc` (42,500,160 and 58,143,808) plus the same head.
@pytest.mark.parametrize('preset,expected', [('r50', 33_999_697),
                                             ('r101', 52_991_825),
                                             ('r152', 68_635_473)])
def test_parameter_count_matches_official(preset, expected):
  variables = _abstract_variables(preset)
  assert _num_elements(variables['params']) == expected


def test_r50_names_and_shapes_map_to_official_keys():
  reference = reference_layouts.read_listing(_REFERENCE)
  official = {key: shape for key, (shape, _, _) in reference.items()
              if not key.endswith('num_batches_tracked')}
  assert all(kind == 'param' for key, (_, _, kind) in reference.items()
             if key in official and not key.endswith(('_mean', '_var')))
  variables = _abstract_variables('r50')
  ours = {}
  for collection in ('params', 'batch_stats'):
    for path, x in traverse_util.flatten_dict(variables[collection]).items():
      axes = sb.torch_weight_axes(path)
      shape = x.shape if axes is None else tuple(x.shape[a] for a in axes)
      key = sb.torch_state_dict_key(path)
      assert key not in ours, f'{path} and another variable map to {key}'
      ours[key] = shape
  assert sorted(set(ours) - set(official)) == []
  assert sorted(set(official) - set(ours)) == []
  assert ours == official


def test_torch_state_dict_key_examples():
  key = sb.torch_state_dict_key
  assert key(('conv1', 'kernel')) == 'conv1.weight'
  assert key(('bn1', 'mean')) == 'bn1.running_mean'
  assert key(('layer3_5', 'conv2', 'kernel')) == 'layer3.5.conv2.weight'
  assert key(('layer2_0', 'downsample', 'bn', 'var')) == (
      'layer2.0.downsample.1.running_var')
  assert key(('deconv_layers_3', 'kernel')) == 'deconv_layers.3.weight'
  assert key(('deconv_layers_7', 'scale')) == 'deconv_layers.7.weight'
  assert key(('final_layer', 'bias')) == 'final_layer.bias'
  with pytest.raises(ValueError, match='embedding'):
    key(('conv1', 'embedding'))
  axes = sb.torch_weight_axes
  assert axes(('deconv_layers_0', 'kernel')) == (2, 3, 0, 1)
  assert axes(('layer1_0', 'downsample', 'conv', 'kernel')) == (3, 2, 0, 1)
  assert axes(('final_layer', 'kernel')) == (3, 2, 0, 1)
  assert axes(('deconv_layers_1', 'scale')) is None


def _narrow_model(**overrides):
  return sb.SimpleBaseline(num_keypoints=17, **{**NARROW, **overrides})


def _fill_like_init(abstract, seed=0):
  """Concrete variables drawn with numpy: He-normal (fan_in) kernels, so
  that signals keep their scale through every layer, and identity BNs.

  Compiling threefry draws for every layer of a ResNet-50 takes far longer
  on CPU than the forward pass; the initialisers themselves are tested on
  single layers in `test_initialisation_follows_original`.
  """
  return reference_layouts.init_like_variables(
      abstract, lambda rng, shape: rng.normal(
          0.0, np.sqrt(2.0 / np.prod(shape[:-1])), shape),
      seed)


@pytest.fixture(scope='module')
def narrow_variables():
  abstract = jax.eval_shape(_narrow_model().init, jax.random.key(0),
                            jnp.zeros((1, 64, 64, 3)))
  return _fill_like_init(abstract)


@pytest.fixture(scope='module')
def narrow_train_step(narrow_variables):
  """(heatmaps, updated variables) of one train-mode forward pass.

  One whole-network compile costs seconds on CPU, so the forward and the
  batch-statistics tests share it; eval mode is compared with PyTorch in
  test_torch_equivalence_sb_hg.py.
  """
  model = _narrow_model()
  x = jax.random.normal(jax.random.key(1), (2, 64, 96, 3)) + 2.0
  return jax.jit(functools.partial(
      model.apply, train=True, mutable=['batch_stats']))(narrow_variables, x)


def test_narrow_forward_shape_dtype_and_structure(narrow_variables,
                                                  narrow_train_step):
  outputs, _ = narrow_train_step
  assert isinstance(outputs, list) and len(outputs) == 1
  assert outputs[0].shape == (2, 16, 24, 17)
  assert outputs[0].dtype == jnp.float32
  assert np.all(np.isfinite(outputs[0]))
  assert float(jnp.abs(outputs[0]).max()) > 0

  params = narrow_variables['params']
  # ResNet-50 stages: 3, 4, 6, 3 Bottlenecks; width 4 -> layer4 outputs 128.
  for stage, blocks in enumerate((3, 4, 6, 3)):
    assert f'layer{stage + 1}_{blocks - 1}' in params
    assert f'layer{stage + 1}_{blocks}' not in params
  assert params['layer4_2']['conv3']['kernel'].shape == (1, 1, 32, 128)
  # Stride on the 3x3 conv; projection shortcut only on each stage's first.
  assert params['layer2_0']['downsample']['conv']['kernel'].shape == (
      1, 1, 16, 32)
  assert 'downsample' not in params['layer2_1']
  # Deconvolutions: no bias, (kh, kw, in, out) kernels, BN after each.
  assert set(params['deconv_layers_0']) == {'kernel'}
  assert params['deconv_layers_0']['kernel'].shape == (4, 4, 128, 8)
  assert params['deconv_layers_3']['kernel'].shape == (4, 4, 8, 8)
  assert set(params['deconv_layers_4']) == {'scale', 'bias'}
  assert 'bias' not in params['conv1']
  assert params['final_layer']['kernel'].shape == (1, 1, 8, 17)
  assert params['final_layer']['bias'].shape == (17,)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))


def test_deconvolutions_upsample_exactly_by_two():
  # ConvTranspose with kernel 4/3/2 and the original's padding choices.
  for kernel, (padding, output_padding) in sb.DECONV_PADDING.items():
    layer = sb.ConvTranspose(2, kernel_size=kernel, padding=padding,
                             output_padding=output_padding)
    out = jax.eval_shape(layer.init_with_output, jax.random.key(0),
                         jnp.zeros((1, 3, 5, 4)))[0]
    assert out.shape == (1, 6, 10, 2), kernel


def _torch_conv_transpose_reference(x, weight, stride, padding,
                                    output_padding):
  """PyTorch's definition, literally: out[i*s - p + a] += x[i] * w[a].

  x: (H, W, C_in); weight: (C_in, C_out, k, k), PyTorch's layout.
  """
  h, w, _ = x.shape
  k = weight.shape[-1]
  full_h, full_w = (h - 1) * stride + k, (w - 1) * stride + k
  full = np.zeros((full_h + output_padding, full_w + output_padding,
                   weight.shape[1]))
  for i in range(h):
    for j in range(w):
      full[i * stride:i * stride + k, j * stride:j * stride + k] += np.einsum(
          'c,cokl->klo', x[i, j], weight)
  return full[padding:full.shape[0] - padding,
              padding:full.shape[1] - padding]


@pytest.mark.parametrize('kernel', [4, 3, 2])
def test_conv_transpose_follows_pytorch_definition(kernel):
  padding, output_padding = sb.DECONV_PADDING[kernel]
  rng = np.random.default_rng(kernel)
  x = rng.normal(size=(1, 3, 4, 2)).astype(np.float32)
  weight = rng.normal(size=(2, 3, kernel, kernel)).astype(np.float32)
  layer = sb.ConvTranspose(3, kernel_size=kernel, padding=padding,
                           output_padding=output_padding)
  ours = layer.apply(
      {'params': {'kernel': jnp.asarray(weight.transpose(2, 3, 0, 1))}}, x)
  expected = _torch_conv_transpose_reference(x[0], weight, 2, padding,
                                             output_padding)
  assert ours.shape == (1, 6, 8, 3)
  np.testing.assert_allclose(ours[0], expected, rtol=1e-5, atol=1e-5)


def test_initialisation_follows_original():
  key = jax.random.key(0, impl='unsafe_rbg')  # Cheap to compile on CPU.
  # Backbone: torchvision's kaiming normal, fan_out = out_channels * k * k.
  block = common.Bottleneck(16, strides=2, downsample=True,
                            kernel_init=sb.resnet_kernel_init)
  variables = jax.jit(block.init)(key, jnp.zeros((1, 8, 8, 32)))
  params = variables['params']
  for name, fan_out in (('conv1', 16), ('conv2', 16 * 9), ('conv3', 64)):
    kernel = np.asarray(params[name]['kernel'])
    expected = np.sqrt(2.0 / fan_out)
    assert 0.9 * expected < kernel.std() < 1.1 * expected, name
    assert 'bias' not in params[name]
  downsample = np.asarray(params['downsample']['conv']['kernel'])
  assert 0.9 * np.sqrt(2 / 64) < downsample.std() < 1.1 * np.sqrt(2 / 64)
  np.testing.assert_array_equal(params['bn3']['scale'], 1.0)
  np.testing.assert_array_equal(params['bn3']['bias'], 0.0)
  np.testing.assert_array_equal(variables['batch_stats']['bn1']['var'], 1.0)
  # Head: deconvolutions ~ N(0, 0.001^2).
  deconv = sb.ConvTranspose(32, kernel_size=4)
  kernel = np.asarray(jax.jit(deconv.init)(
      key, jnp.zeros((1, 2, 2, 64)))['params']['kernel'])
  assert 0.0009 < kernel.std() < 0.0011
  assert abs(kernel.mean()) < 1e-4


def test_train_mode_updates_batch_stats(narrow_variables, narrow_train_step):
  _, updates = narrow_train_step
  # Backbone and head BatchNorms use (and record) batch statistics.
  for name in ('bn1', 'deconv_layers_1', 'deconv_layers_7'):
    old = narrow_variables['batch_stats'][name]['mean']
    new = updates['batch_stats'][name]['mean']
    assert not np.allclose(old, new), name
  assert (jax.tree.structure(updates['batch_stats']) ==
          jax.tree.structure(narrow_variables['batch_stats']))


def test_bfloat16_compute_returns_float32(narrow_variables):
  # Lowered, not run: compiling bf16 ResNet-50 convolutions is slow on CPU;
  # test_hourglass.py runs a bf16 network end to end.
  model = _narrow_model(dtype=jnp.bfloat16)
  x = jnp.zeros((2, 64, 64, 3))
  apply = functools.partial(model.apply, train=True, mutable=['batch_stats'])
  (heatmaps,), updates = jax.eval_shape(apply, narrow_variables, x)
  assert heatmaps.dtype == jnp.float32
  assert heatmaps.shape == (2, 16, 16, 17)
  assert all(s.dtype == jnp.float32 for s in jax.tree.leaves(updates))
  # Every convolution (53 backbone, 3 deconvolutions, final_layer) computes
  # in bf16 on bf16 operands, while the parameters stay float32.
  convs = [line for line in jax.jit(apply).lower(
      narrow_variables, x).as_text().splitlines()
           if 'stablehlo.convolution' in line]
  assert len(convs) == 57
  assert all(line.rstrip().endswith('xbf16>') for line in convs)
  assert all('xf32>' not in line.split(':')[-1] for line in convs)


def test_bad_input_size_is_a_clear_error(narrow_variables):
  with pytest.raises(ValueError, match='divisible by 32'):
    jax.eval_shape(_narrow_model().apply, narrow_variables,
                   jnp.zeros((1, 64, 48, 3)))


def test_inconsistent_structure_fails_at_construction():
  with pytest.raises(ValueError, match='depth'):
    sb.SimpleBaseline(num_keypoints=17, depth=34)
  with pytest.raises(ValueError, match='one entry per deconvolution'):
    sb.SimpleBaseline(num_keypoints=17, deconv_features=(256, 256))
  with pytest.raises(ValueError, match='deconv_kernels'):
    sb.SimpleBaseline(num_keypoints=17, deconv_kernels=(4, 5, 4))


def test_build_model_presets():
  model = models.build_model(
      dict(name='simple_baseline', preset='r101', dtype='bfloat16'), 14)
  assert isinstance(model, sb.SimpleBaseline)
  assert model.depth == 101
  assert model.num_keypoints == 14
  assert model.dtype == jnp.bfloat16
  model = models.build_model(
      dict(name='simple_baseline', preset='r152', deconv_features=[64, 64, 64]),
      17)
  assert model.depth == 152 and model.deconv_features == (64, 64, 64)
  with pytest.raises(ValueError, match=r"'r34'.*'r50'"):
    models.build_model(dict(name='simple_baseline', preset='r34'), 17)


@pytest.mark.parametrize('kernel_size,strides,padding,output_padding',
                         [(4, 2, 1, 0), (3, 2, 1, 1), (2, 2, 0, 0)])
def test_conv_transpose_gradients_match_autodiff(kernel_size, strides, padding,
                                                 output_padding):
  # The custom backward (a strided convolution and its weight gradient) must
  # give exactly the gradients autodiff takes through the dilated forward.
  from posejax.models import simple_baseline as sb
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 5, 4, 3)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(kernel_size, kernel_size, 3, 6)), jnp.float32)
  low = kernel_size - 1 - padding
  y = sb._upsampling_conv(x, kernel, strides, low, output_padding)
  weights = jnp.asarray(rng.normal(size=y.shape), jnp.float32)

  def loss(f):
    return lambda x, k: jnp.sum(weights * f(x, k, strides, low, output_padding) ** 2)

  ours = jax.grad(loss(sb._transposed_conv), argnums=(0, 1))(x, kernel)
  plain = jax.grad(loss(sb._upsampling_conv), argnums=(0, 1))(x, kernel)
  for a, b in zip(ours, plain):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)
