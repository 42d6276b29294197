"""CPN and MSPN: published sizes, the reference layouts, PyTorch parity.

The PyTorch side is tests/torch_reference.py's `TorchCPN` (the structure of
GengDavid/pytorch-cpn) and `TorchMSPN` (megvii-research/MSPN); their random
state dicts go through the checkpoint import (`checkpoints.official`).
"""

from __future__ import annotations

from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from posejax import models
from posejax.checkpoints import imagenet
from posejax.checkpoints import layouts
from posejax.checkpoints import official
from posejax.models import common
from posejax.models import cpn
from posejax.models import mspn
from posejax.models import summary
import reference_layouts


@pytest.mark.parametrize('name, preset, listing, num_params', [
    ('cpn', 'r50', 'cpn_r50_official', 27_406_826),
    ('mspn', '1stg', 'mspn_1stg_official', 25_141_708),
    ('mspn', '2stg', 'mspn_2stg_official', 56_867_032),
    ('mspn', '4stg', 'mspn_4stg_official', 120_317_680),
])
def test_published_sizes_have_the_references_keys_shapes_and_counts(
    name, preset, listing, num_params):
  model = models.build_model({'name': name, 'preset': preset}, 17)
  abstract = summary.abstract_variables(model, (256, 192))
  assert sum(v.size for v in jax.tree.leaves(abstract['params'])) == num_params
  layout = layouts.LAYOUTS[name]
  ours = {layout.key(path[1:]): leaf.shape
          for path, leaf in traverse_util.flatten_dict(abstract).items()}
  reference = {k: v[0] for k, v in reference_layouts.read_listing(listing).items()
               if not k.endswith('num_batches_tracked')}
  assert set(ours) == set(reference)
  # Kernels are HWIO here, OIHW there.
  for key, shape in reference.items():
    flax_shape = ours[key]
    if len(shape) == 4:
      shape = (shape[2], shape[3], shape[1], shape[0])
    assert flax_shape == shape, key


def test_cpn_101_deepens_only_the_backbone():
  r50, r101 = (summary.abstract_variables(
      models.build_model({'name': 'cpn', 'preset': p}, 17), (256, 192)) for p in ('r50', 'r101'))
  count = lambda v, part: sum(x.size for x in jax.tree.leaves(v['params'][part]))
  assert count(r101, 'global_net') == count(r50, 'global_net')
  assert count(r101, 'refine_net') == count(r50, 'refine_net')
  # torchvision's ResNet-101 has 42.5M parameters, 44.5M with its classifier.
  assert count(r101, 'resnet') == 42_500_160


@pytest.mark.parametrize('name, fields, expected', [
    ('cpn', dict(width=8, pyramid_features=16, refine_planes=8), 5),
    ('mspn', dict(num_stages=3, width=8, decoder_features=16), 12),
])
def test_every_output_is_a_quarter_resolution_heatmap(name, fields, expected):
  model = models.build_model({'name': name, **fields}, 5)
  shapes = jax.eval_shape(
      lambda v, x: model.apply(v, x), summary.abstract_variables(model, (64, 96)),
      jax.ShapeDtypeStruct((2, 64, 96, 3), jnp.float32))
  assert [s.shape for s in shapes] == [(2, 16, 24, 5)] * expected


@pytest.mark.slow
@pytest.mark.parametrize('name, fields', [
    ('cpn', dict(width=8, pyramid_features=16, refine_planes=8)),
    ('mspn', dict(num_stages=2, width=8, decoder_features=16)),
])
def test_output_norm_init_zero_starts_every_output_at_zero_and_still_learns(
    name, fields):
  x = jax.random.normal(jax.random.key(1), (2, 64, 64, 3))
  published = models.build_model({'name': name, **fields}, 3)
  zero = models.build_model({'name': name, **fields, 'output_scale': 1.0,
                             'output_norm_init': 0.0}, 3)
  # Same parameters but the output BatchNorms' scales, which start at 0.
  ones = published.init(jax.random.key(0), x)
  zeros = zero.init(jax.random.key(0), x)
  flat_ones = traverse_util.flatten_dict(ones['params'])
  flat_zeros = traverse_util.flatten_dict(zeros['params'])
  changed = [path for path in flat_ones
             if not np.array_equal(flat_ones[path], flat_zeros[path])]
  assert changed and all(path[-1] == 'scale' for path in changed)

  def train_outputs(model, variables, params):
    return model.apply({**variables, 'params': params}, x, train=True,
                       mutable=['batch_stats'])[0]

  # The scales get a gradient although every output is zero, so training
  # leaves the start.
  def outputs_and_grads(params):
    loss = lambda p: sum(((y - 0.5) ** 2).mean()
                         for y in train_outputs(zero, zeros, p))
    return (train_outputs(zero, zeros, params),
            train_outputs(published, ones, ones['params']), jax.grad(loss)(params))

  outputs, published_outputs, grads = outputs_and_grads(zeros['params'])
  assert len(changed) == len(outputs)  # one per output
  assert all(np.all(np.asarray(y) == 0) for y in outputs)
  assert all(np.std(np.asarray(y)) > 0 for y in published_outputs)
  grads = traverse_util.flatten_dict(grads)
  assert all(np.abs(grads[path]).max() > 0 for path in changed)


@pytest.mark.parametrize('name', ['cpn', 'mspn'])
def test_inputs_not_divisible_by_32_are_a_clear_error(name):
  model = models.build_model({'name': name, **models.NETWORKS[name].smoke}, 5)
  with pytest.raises(ValueError, match='divisible by 32'):
    jax.eval_shape(lambda x: model.init(jax.random.key(0), x),
                   jax.ShapeDtypeStruct((1, 72, 64, 3), jnp.float32))


def _torch_parity(theirs, model, size):
  torch = pytest.importorskip('torch')
  state_dict = {k: v.numpy() for k, v in theirs.eval().state_dict().items()}
  name = 'cpn' if isinstance(model, cpn.CPN) else 'mspn'
  variables = official.variables_from_state_dict(state_dict, name, model, size)
  x = np.random.default_rng(1).standard_normal((2, *size, 3)).astype(np.float32)
  ours = model.apply(jax.tree.map(jnp.asarray, variables), jnp.asarray(x))
  with torch.no_grad():
    expected = theirs(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
  return ours, expected


def _randomize_bn(module, torch):
  # Non-trivial running statistics, so that eval-mode BatchNorm is tested.
  gen = torch.Generator().manual_seed(3)
  for m in module.modules():
    if isinstance(m, torch.nn.BatchNorm2d):
      m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=gen))
      m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=gen))
      m.weight.data.copy_(0.5 + torch.rand(m.num_features, generator=gen))
      m.bias.data.copy_(0.1 * torch.randn(m.num_features, generator=gen))


@pytest.mark.torch
def test_cpn_gives_the_pytorch_ports_outputs():
  torch = pytest.importorskip('torch')
  from torch_reference import TorchCPN  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  theirs = TorchCPN(blocks=(3, 4, 6, 3), width=8, features=16, planes=8, joints=5,
                    out_size=(16, 16))
  _randomize_bn(theirs, torch)
  model = cpn.CPN(num_keypoints=5, width=8, pyramid_features=16, refine_planes=8)
  ours, (global_outs, refined) = _torch_parity(theirs, model, (64, 64))
  expected = [*global_outs, refined]
  assert len(ours) == len(expected) == 5
  # posejax's maps are the reference's / 255 (peak-1 targets, `output_scale`).
  for a, b in zip(ours, expected):
    b = b.numpy().transpose(0, 2, 3, 1) / 255
    np.testing.assert_allclose(np.asarray(a), b, atol=1e-4 * np.abs(b).max(), rtol=0)


@pytest.mark.torch
def test_mspn_gives_the_official_outputs():
  torch = pytest.importorskip('torch')
  from torch_reference import TorchMSPN  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  theirs = TorchMSPN(stages=2, width=8, features=16, joints=5)
  _randomize_bn(theirs, torch)
  model = mspn.MSPN(num_keypoints=5, num_stages=2, width=8, decoder_features=16)
  ours, expected = _torch_parity(theirs, model, (64, 64))
  assert len(ours) == len(expected) == 8
  # posejax's maps are the reference's / 255 (peak-1 targets, `output_scale`).
  for a, b in zip(ours, expected):
    b = b.numpy().transpose(0, 2, 3, 1) / 255
    np.testing.assert_allclose(np.asarray(a), b, atol=1e-4 * np.abs(b).max(), rtol=0)


def _torchvision_resnet(width, rng):
  """A state dict in torchvision's ResNet-50 layout at `width`, with `fc`."""
  from torch_reference import TorchResNetTrunk  # pylint: disable=g-import-not-at-top
  torch = pytest.importorskip('torch')
  torch.manual_seed(int(rng.integers(1000)))
  state_dict = {k: v.numpy() for k, v in TorchResNetTrunk((3, 4, 6, 3), width).state_dict().items()}
  state_dict['fc.weight'] = np.zeros((1000, 32 * width), np.float32)
  state_dict['fc.bias'] = np.zeros((1000,), np.float32)
  return state_dict


@pytest.mark.torch
def test_both_start_from_torchvisions_resnet50():
  state_dict = _torchvision_resnet(8, np.random.default_rng(0))
  model = cpn.CPN(num_keypoints=5, width=8, pyramid_features=16, refine_planes=8)
  loaded = imagenet.backbone_variables(state_dict, 'cpn', model, (64, 64))
  assert len(loaded.loaded) == sum(not k.endswith('num_batches_tracked') for k in state_dict) - 2
  np.testing.assert_array_equal(
      loaded.variables[('params', 'resnet', 'layer3_2', 'conv2', 'kernel')],
      state_dict['layer3.2.conv2.weight'].transpose(2, 3, 1, 0))
  assert {k.split('.')[0] for k in loaded.kept} == {'global_net', 'refine_net'}

  model = mspn.MSPN(num_keypoints=5, num_stages=2, width=8, decoder_features=16)
  loaded = imagenet.backbone_variables(state_dict, 'mspn', model, (64, 64))
  np.testing.assert_array_equal(
      loaded.variables[('params', 'stage0_downsample', 'layer2_0', 'downsample',
                        'conv', 'kernel')],
      state_dict['layer2.0.downsample.0.weight'].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(
      loaded.variables[('batch_stats', 'top_conv', 'bn', 'var')],
      state_dict['bn1.running_var'])
  # The second stage, the decoders and the conv biases keep their init.
  assert not any(k.startswith(('stage1.', 'stage0.upsample.')) for k in loaded.loaded)
  assert all(k.startswith(('stage1.', 'stage0.upsample.')) or k.endswith('conv.bias')
             for k in loaded.kept)
  # A pose checkpoint is no ImageNet start.
  with pytest.raises(ValueError, match='no fc.weight'):
    imagenet.backbone_variables(
        {k: v for k, v in state_dict.items() if not k.startswith('fc.')},
        'mspn', model, (64, 64))


def test_file_keys_land_on_the_trunk():
  assert cpn.torch_file_key('layer1.0.conv1.weight') == 'resnet.layer1.0.conv1.weight'
  assert cpn.torch_file_key('global_net.laterals.0.0.weight') == 'global_net.laterals.0.0.weight'
  assert (mspn.torch_file_key('layer4.2.bn3.running_mean')
          == 'stage0.downsample.layer4.2.conv_bn_relu3.bn.running_mean')
  assert mspn.torch_file_key('conv1.weight') == 'top.conv.conv.weight'
  assert (mspn.torch_file_key('stage1.upsample.up2.up_conv.conv.bias')
          == 'stage1.upsample.up2.up_conv.conv.bias')


def test_aligned_bilinear_resize_keeps_the_corners_and_is_linear():
  x = jnp.asarray(np.random.default_rng(0).standard_normal((1, 4, 3, 2)), jnp.float32)
  y = common.resize_bilinear_aligned(x, (7, 5))
  np.testing.assert_allclose(y[:, ::2, ::2], x, atol=1e-6)
  np.testing.assert_allclose(y[0, 1, 0], 0.5 * (x[0, 0, 0] + x[0, 1, 0]), atol=1e-6)
