"""CPM and HRNetV2 against PyTorch (the frameworks of the originals).

Skipped without torch (`pip install -e .[torch]`).
"""

from __future__ import annotations

from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from posejax.models import cpm
from posejax.models import hrnet

pytestmark = pytest.mark.torch

torch = pytest.importorskip('torch')
F = torch.nn.functional
nn = torch.nn


@pytest.mark.parametrize('in_size,out_size', [
    ((4, 3), (8, 6)),      # x2: fusion of adjacent branches
    ((4, 3), (16, 12)),    # x4
    ((2, 3), (16, 24)),    # x8: the lowest HRNet-W18 branch in the head
    ((3, 5), (10, 10)),    # sizes off the grid (input not divisible by 32)
])
def test_bilinear_upsampling_matches_torch_interpolate(in_size, out_size):
  x = np.random.default_rng(0).normal(size=(2, *in_size, 5)).astype(np.float32)
  expected = F.interpolate(
      torch.from_numpy(x.transpose(0, 3, 1, 2)), size=out_size,
      mode='bilinear', align_corners=False).numpy().transpose(0, 2, 3, 1)
  ours = hrnet._upsample_bilinear(jnp.asarray(x), out_size)
  np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)


class _TorchConvModule(nn.Module):
  """mmcv ConvModule's layout: attributes `conv` and (with BN) `bn`."""

  def __init__(self, cin, cout, k, norm=True, relu=True):
    super().__init__()
    self.conv = nn.Conv2d(cin, cout, k, padding=(k - 1) // 2, bias=not norm)
    self.bn = nn.BatchNorm2d(cout) if norm else None
    self.relu = relu

  def forward(self, x):
    x = self.conv(x)
    if self.bn is not None:
      x = self.bn(x)
    return F.relu(x) if self.relu else x


class _TorchCpmBlock(nn.Module):

  def __init__(self, cin, feat):
    super().__init__()
    self.model = nn.Sequential(_TorchConvModule(cin, feat, 11),
                               _TorchConvModule(feat, feat, 11),
                               _TorchConvModule(feat, feat, 11))

  def forward(self, x):
    return self.model(x)


class _TorchCPM(nn.Module):
  """MMPose's CPM as described in its source, with the widths exposed."""

  def __init__(self, k, stages, feat, middle, stem, hidden):
    super().__init__()
    pool = lambda: nn.MaxPool2d(3, stride=2, padding=1)
    self.stem = nn.Sequential(
        _TorchConvModule(3, stem, 9), pool(),
        _TorchConvModule(stem, stem, 9), pool(),
        _TorchConvModule(stem, stem, 9), pool(),
        _TorchConvModule(stem, 32, 5), _TorchConvModule(32, hidden, 9),
        _TorchConvModule(hidden, hidden, 1),
        _TorchConvModule(hidden, k, 1, norm=False, relu=False))
    self.middle = nn.Sequential(
        _TorchConvModule(3, stem, 9), pool(),
        _TorchConvModule(stem, stem, 9), pool(),
        _TorchConvModule(stem, stem, 9), pool())
    self.cpm_stages = nn.ModuleList(
        [_TorchCpmBlock(middle + k, feat) for _ in range(stages - 1)])
    self.middle_conv = nn.ModuleList(
        [nn.Sequential(_TorchConvModule(stem, middle, 5))
         for _ in range(stages - 1)])
    self.out_convs = nn.ModuleList([
        nn.Sequential(_TorchConvModule(feat, feat, 1),
                      _TorchConvModule(feat, k, 1, norm=False, relu=False))
        for _ in range(stages - 1)])

  def forward(self, x):
    outputs = [self.stem(x)]
    middle = self.middle(x)
    for block, reduce, out in zip(self.cpm_stages, self.middle_conv,
                                  self.out_convs):
      y = torch.cat([outputs[-1], reduce(middle)], 1)
      outputs.append(out(block(y)))
    return outputs


def test_cpm_matches_torch_reference_in_eval_mode():
  fields = dict(num_stages=3, feat_channels=8, middle_channels=4,
                stem_channels=8, stem_hidden_channels=16)
  k = 5
  torch.manual_seed(0)
  reference = _TorchCPM(k, 3, 8, 4, 8, 16).eval()
  with torch.no_grad():
    for name, value in reference.state_dict().items():
      if name.endswith('running_var') or name.endswith('bn.weight'):
        value.uniform_(0.5, 1.5)
      elif name.endswith('running_mean') or name.endswith('bias'):
        value.uniform_(-0.2, 0.2)
  state = {k_: v.numpy() for k_, v in reference.state_dict().items()}

  model = cpm.CPM(num_keypoints=k, **fields)
  x = np.random.default_rng(1).normal(size=(2, 40, 32, 3)).astype(np.float32)
  abstract = jax.eval_shape(model.init, jax.random.key(0), jnp.asarray(x))
  variables, used = {}, set()
  for collection in ('params', 'batch_stats'):
    flat = {}
    for path, leaf in traverse_util.flatten_dict(abstract[collection]).items():
      key = cpm.torch_state_dict_key(path)
      value = state[key]
      if value.ndim == 4:
        value = value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
      assert value.shape == leaf.shape, key
      flat[path] = jnp.asarray(value)
      used.add(key)
    variables[collection] = traverse_util.unflatten_dict(flat)
  assert sorted(k_ for k_ in state if k_ not in used
                and not k_.endswith('num_batches_tracked')) == []

  ours = jax.jit(model.apply)(variables, jnp.asarray(x))
  with torch.no_grad():
    expected = reference(torch.from_numpy(x.transpose(0, 3, 1, 2)))
  assert len(ours) == len(expected) == 3
  for a, b in zip(ours, expected):
    b = b.numpy().transpose(0, 2, 3, 1)
    assert a.shape == b.shape == (2, 5, 4, 5)
    np.testing.assert_allclose(a, b, rtol=1e-4,
                               atol=1e-4 * float(np.abs(b).max()))
