"""SimpleBaseline and Stacked Hourglass against PyTorch references.

The PyTorch modules below mirror the structure and attribute names of the
originals (microsoft/human-pose-estimation.pytorch `pose_resnet.py`,
princeton-vl/pytorch_stacked_hourglass `models/layers.py` and
`models/posenet.py`), so their state dicts have the official keys. Weights go
through `torch_state_dict_key` in both directions; outputs must agree to
float32 precision with BatchNorm in eval mode and random running statistics.
"""

from __future__ import annotations

from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from posejax.models import common
from posejax.models import hourglass
from posejax.models import simple_baseline

torch = pytest.importorskip('torch')
nn = torch.nn

TOLERANCE = 1e-4


from torch_reference import (  # noqa: E402
    TorchBottleneck, TorchConv, TorchHourglass, TorchPoseNet, TorchPoseResNet,
    TorchResidual, projection)

pytestmark = pytest.mark.torch


# --- Weight transfer ---------------------------------------------------------


def _randomise_batch_norms(module: nn.Module, seed: int) -> None:
  """Random affine parameters and running statistics (eval-mode BN)."""
  gen = torch.Generator().manual_seed(seed)
  for m in module.modules():
    if isinstance(m, nn.BatchNorm2d):
      n = m.num_features
      with torch.no_grad():
        m.weight.copy_(0.5 + torch.rand(n, generator=gen))
        m.bias.copy_(0.1 * torch.randn(n, generator=gen))
        m.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
        m.running_var.copy_(0.5 + torch.rand(n, generator=gen))


def _torch_to_flax(abstract, state_dict, key_fn, axes_fn):
  """Flax variables (structure of `abstract`) from a PyTorch state dict."""
  variables = {}
  for collection, tree in abstract.items():
    flat = {}
    for path, leaf in traverse_util.flatten_dict(tree).items():
      value = state_dict[key_fn(path)].detach().numpy()
      axes = axes_fn(path)
      if axes is not None:
        value = value.transpose(np.argsort(axes))
      assert value.shape == leaf.shape, path
      flat[path] = jnp.asarray(value)
    variables[collection] = traverse_util.unflatten_dict(flat)
  return variables


def _network_from_torch(model, x, state_dict, key_fn, axes_fn):
  """A whole network's variables (for input `x`) from its PyTorch state dict.

  Returns:
    The variables, the official keys they were read from, and the keys of
    `state_dict` other than the `num_batches_tracked` buffers.
  """
  abstract = jax.eval_shape(model.init, jax.random.key(0), x)
  variables = _torch_to_flax(abstract, state_dict, key_fn, axes_fn)
  used = {key_fn(path)
          for tree in variables.values()
          for path in traverse_util.flatten_dict(tree)}
  official = {k for k in state_dict if 'num_batches_tracked' not in k}
  return variables, used, official


def _flax_to_torch(variables, key_fn, axes_fn):
  """A PyTorch state dict (official keys) from Flax variables."""
  state_dict = {}
  for tree in variables.values():
    for path, leaf in traverse_util.flatten_dict(tree).items():
      value = np.array(leaf)  # A writable copy for torch.
      axes = axes_fn(path)
      if axes is not None:
        value = np.ascontiguousarray(value.transpose(axes))
      state_dict[key_fn(path)] = torch.from_numpy(value)
  return state_dict


def _sb_axes(path):
  return simple_baseline.torch_weight_axes(path)


def _hg_axes(path):
  return (3, 2, 0, 1) if path[-1] == 'kernel' else None


def _random_flax_variables(abstract, seed):
  """Random variables with positive BN scales and variances."""
  rng = np.random.default_rng(seed)

  def fill(path, x):
    leaf = path[-1].key
    if leaf in ('scale', 'var'):
      value = rng.uniform(0.5, 1.5, x.shape)
    elif leaf == 'kernel':
      fan_in = np.prod(x.shape[:-1])
      value = rng.normal(0.0, 1.0 / np.sqrt(fan_in), x.shape)
    else:
      value = rng.normal(0.0, 0.1, x.shape)
    return jnp.asarray(value, x.dtype)

  return jax.tree_util.tree_map_with_path(fill, abstract)


def _images(shape, seed):
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _run_torch(module, x_nhwc):
  module.eval()
  with torch.no_grad():
    out = module(torch.from_numpy(x_nhwc).permute(0, 3, 1, 2))
  outs = out if isinstance(out, list) else [out]
  return [o.permute(0, 2, 3, 1).numpy() for o in outs]


def _assert_close(ours, theirs):
  assert len(ours) == len(theirs)
  for a, b in zip(ours, theirs):
    a = np.asarray(a)
    assert a.shape == b.shape
    assert float(np.abs(b).max()) > 0.1  # A comparison of signals, not zeros.
    np.testing.assert_allclose(a, b, rtol=0, atol=TOLERANCE)


# --- SimpleBaselines ---------------------------------------------------------


@pytest.mark.parametrize('kernel', [4, 3, 2])
def test_conv_transpose_matches_torch(kernel):
  padding, output_padding = simple_baseline.DECONV_PADDING[kernel]
  reference = nn.ConvTranspose2d(6, 5, kernel, stride=2, padding=padding,
                                 output_padding=output_padding, bias=False)
  layer = simple_baseline.ConvTranspose(
      5, kernel_size=kernel, strides=2, padding=padding,
      output_padding=output_padding, name='deconv_layers_0')
  weight = reference.weight.detach().numpy()  # (in, out, kh, kw)
  params = {'kernel': jnp.asarray(weight.transpose(2, 3, 0, 1))}
  x = _images((2, 7, 5, 6), seed=0)
  ours = jax.jit(layer.apply)({'params': params}, x)
  assert ours.shape == (2, 14, 10, 5)
  _assert_close([ours], _run_torch(reference, x))


def test_bottleneck_flax_to_torch():
  # Strided block with a projection shortcut: the stride must sit on conv2.
  block = common.Bottleneck(4, strides=2, downsample=True)
  x = _images((2, 9, 8, 8), seed=1)
  abstract = jax.eval_shape(block.init, jax.random.key(0), x)
  variables = _random_flax_variables(abstract, seed=2)
  reference = TorchBottleneck(8, 4, 2, projection(8, 16, 2))
  reference.load_state_dict(
      _flax_to_torch(variables, simple_baseline.torch_state_dict_key,
                     _sb_axes), strict=True)
  ours = jax.jit(block.apply)(variables, x)
  assert ours.shape == (2, 5, 4, 16)
  _assert_close([ours], _run_torch(reference, x))


def test_narrow_simple_baseline_torch_to_flax():
  """Whole network: backbone, deconvolution head and final layer."""
  torch.manual_seed(0)
  kwargs = dict(width=4, deconv_features=(8, 6, 10), deconv_kernels=(4, 3, 2))
  reference = TorchPoseResNet(simple_baseline.RESNET_STAGE_BLOCKS[50],
                              num_joints=5, **kwargs)
  _randomise_batch_norms(reference, seed=3)
  state_dict = reference.state_dict()
  model = simple_baseline.SimpleBaseline(num_keypoints=5, **kwargs)
  x = _images((2, 64, 64, 3), seed=4)
  variables, ours, official = _network_from_torch(
      model, x, state_dict, simple_baseline.torch_state_dict_key, _sb_axes)
  # Every official parameter and statistic is used by the port.
  assert ours == official
  (heatmaps,) = jax.jit(model.apply)(variables, x)
  assert heatmaps.shape == (2, 16, 16, 5)
  _assert_close([heatmaps], _run_torch(reference, x))


# --- Stacked Hourglass -------------------------------------------------------


@pytest.mark.parametrize('width_in,width_out', [(8, 8), (6, 10)])
def test_residual_flax_to_torch(width_in, width_out):
  block = hourglass.Residual(width_out)
  x = _images((2, 6, 5, width_in), seed=5)
  abstract = jax.eval_shape(block.init, jax.random.key(0), x)
  variables = _random_flax_variables(abstract, seed=6)
  assert ('skip_layer' in variables['params']) == (width_in != width_out)
  reference = TorchResidual(width_in, width_out)
  missing, unexpected = reference.load_state_dict(
      _flax_to_torch(variables, hourglass.torch_state_dict_key, _hg_axes),
      strict=False)
  assert not unexpected
  expected_missing = {'skip_layer.conv.weight', 'skip_layer.conv.bias'}
  assert ({k for k in missing if 'num_batches_tracked' not in k} ==
          (expected_missing if width_in == width_out else set()))
  ours = jax.jit(block.apply)(variables, x)
  _assert_close([ours], _run_torch(reference, x))


def test_hourglass_module_torch_to_flax():
  torch.manual_seed(1)
  reference = TorchHourglass(2, 8)
  _randomise_batch_norms(reference, seed=7)
  module = hourglass.Hourglass(depth=2, features=8)
  x = _images((2, 8, 12, 8), seed=8)
  abstract = jax.eval_shape(module.init, jax.random.key(0), x)
  variables = _torch_to_flax(abstract, reference.state_dict(),
                             hourglass.torch_state_dict_key, _hg_axes)
  ours = jax.jit(module.apply)(variables, x)
  _assert_close([ours], _run_torch(reference, x))


def test_small_stacked_hourglass_torch_to_flax():
  """Pre-network, two depth-2 hourglasses, supervision re-injection."""
  torch.manual_seed(2)
  reference = TorchPoseNet(nstack=2, inp_dim=16, oup_dim=5, depth=2)
  _randomise_batch_norms(reference, seed=9)
  state_dict = reference.state_dict()
  model = hourglass.StackedHourglass(num_keypoints=5, num_stacks=2,
                                     features=16, depth=2)
  x = _images((2, 64, 48, 3), seed=10)
  variables, ours, official = _network_from_torch(
      model, x, state_dict, hourglass.torch_state_dict_key, _hg_axes)
  # Official keys: exactly ours plus the documented unused ones.
  unused = hourglass.unused_torch_state_dict_keys(model)
  assert not ours & unused
  assert ours | unused == official
  outputs = jax.jit(model.apply)(variables, x)
  assert [o.shape for o in outputs] == [(2, 16, 12, 5)] * 2
  _assert_close(outputs, _run_torch(reference, x))
