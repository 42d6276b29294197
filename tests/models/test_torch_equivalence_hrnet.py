"""HRNet and its blocks give PyTorch's outputs for the same weights.

The PyTorch side mirrors the structure of the official
deep-high-resolution-net.pytorch `pose_hrnet.py` (written here, small), and the
weights go from Flax to PyTorch through `hrnet.torch_state_dict_key`, so a
passing test checks the key mapping, the kernel layout, padding, fusion and
the head at once.
"""

from __future__ import annotations

from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from posejax.models import common
from posejax.models import hrnet

torch = pytest.importorskip('torch')
tnn = torch.nn

_TOL = 1e-4


# ------------------------------------------------------------ PyTorch side

def _bn(c):
  return tnn.BatchNorm2d(c, momentum=0.1)


class TorchBasicBlock(tnn.Module):
  expansion = 1

  def __init__(self, inplanes, planes, stride=1, downsample=None):
    super().__init__()
    self.conv1 = tnn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
    self.bn1 = _bn(planes)
    self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
    self.bn2 = _bn(planes)
    self.downsample = downsample

  def forward(self, x):
    y = torch.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    r = x if self.downsample is None else self.downsample(x)
    return torch.relu(y + r)


class TorchBottleneck(tnn.Module):
  expansion = 4

  def __init__(self, inplanes, planes, stride=1, downsample=None):
    super().__init__()
    self.conv1 = tnn.Conv2d(inplanes, planes, 1, bias=False)
    self.bn1 = _bn(planes)
    self.conv2 = tnn.Conv2d(planes, planes, 3, stride, 1, bias=False)
    self.bn2 = _bn(planes)
    self.conv3 = tnn.Conv2d(planes, planes * 4, 1, bias=False)
    self.bn3 = _bn(planes * 4)
    self.downsample = downsample

  def forward(self, x):
    y = torch.relu(self.bn1(self.conv1(x)))
    y = torch.relu(self.bn2(self.conv2(y)))
    y = self.bn3(self.conv3(y))
    r = x if self.downsample is None else self.downsample(x)
    return torch.relu(y + r)


def _projection(inplanes, planes, stride=1):
  return tnn.Sequential(tnn.Conv2d(inplanes, planes, 1, stride, bias=False),
                        _bn(planes))


class TorchHRModule(tnn.Module):
  """Branches of BasicBlocks, then SUM fusion (nearest upsampling)."""

  def __init__(self, widths, num_blocks, multi_scale_output=True):
    super().__init__()
    n = len(widths)
    self.branches = tnn.ModuleList(
        tnn.Sequential(*[TorchBasicBlock(w, w) for _ in range(num_blocks)])
        for w in widths)
    self.fuse_layers = tnn.ModuleList()
    for i in range(n if multi_scale_output else 1):
      row = tnn.ModuleList()
      for j in range(n):
        if j > i:
          row.append(tnn.Sequential(
              tnn.Conv2d(widths[j], widths[i], 1, bias=False), _bn(widths[i]),
              tnn.Upsample(scale_factor=2**(j - i), mode='nearest')))
        elif j == i:
          row.append(None)
        else:
          steps = []
          for k in range(i - j):
            last = k == i - j - 1
            out = widths[i] if last else widths[j]
            layers = [tnn.Conv2d(widths[j], out, 3, 2, 1, bias=False), _bn(out)]
            if not last:
              layers.append(tnn.ReLU())
            steps.append(tnn.Sequential(*layers))
          row.append(tnn.Sequential(*steps))
      self.fuse_layers.append(row)

  def forward(self, xs):
    xs = [branch(x) for branch, x in zip(self.branches, xs)]
    if len(xs) == 1:
      return xs
    outs = []
    for row in self.fuse_layers:
      y = 0
      for j, layer in enumerate(row):
        y = y + (xs[j] if layer is None else layer(xs[j]))
      outs.append(torch.relu(y))
    return outs


class TorchPoseHRNet(tnn.Module):
  """The official PoseHighResolutionNet's structure, sizes as parameters."""

  def __init__(self, num_joints, stem_width, stage1_blocks, widths,
               num_modules, num_blocks):
    super().__init__()
    self.conv1 = tnn.Conv2d(3, stem_width, 3, 2, 1, bias=False)
    self.bn1 = _bn(stem_width)
    self.conv2 = tnn.Conv2d(stem_width, stem_width, 3, 2, 1, bias=False)
    self.bn2 = _bn(stem_width)
    blocks, inplanes = [], stem_width
    for _ in range(stage1_blocks):
      down = (None if inplanes == stem_width * 4
              else _projection(inplanes, stem_width * 4))
      blocks.append(TorchBottleneck(inplanes, stem_width, 1, down))
      inplanes = stem_width * 4
    self.layer1 = tnn.Sequential(*blocks)
    previous = [inplanes]
    self.num_stages = len(widths)
    for stage in range(2, self.num_stages + 1):
      current = list(widths[:stage])
      transition = tnn.ModuleList()
      for i, w in enumerate(current):
        if i < len(previous):
          transition.append(None if previous[i] == w else tnn.Sequential(
              tnn.Conv2d(previous[i], w, 3, 1, 1, bias=False), _bn(w),
              tnn.ReLU()))
        else:
          steps, c = [], previous[-1]
          for k in range(i + 1 - len(previous)):
            out = w if k == i - len(previous) else c
            steps.append(tnn.Sequential(
                tnn.Conv2d(c, out, 3, 2, 1, bias=False), _bn(out), tnn.ReLU()))
            c = out
          transition.append(tnn.Sequential(*steps))
      setattr(self, f'transition{stage - 1}', transition)
      n = num_modules[stage - 2]
      setattr(self, f'stage{stage}', tnn.Sequential(*[
          _ListModule(TorchHRModule(
              current, num_blocks,
              multi_scale_output=not (stage == self.num_stages and m == n - 1)))
          for m in range(n)]))
      previous = current
    self.final_layer = tnn.Conv2d(widths[0], num_joints, 1)

  def forward(self, x):
    x = torch.relu(self.bn1(self.conv1(x)))
    x = torch.relu(self.bn2(self.conv2(x)))
    xs = [self.layer1(x)]
    for stage in range(2, self.num_stages + 1):
      transition = getattr(self, f'transition{stage - 1}')
      xs = [xs[i] if t is None and i < len(xs) else t(xs[-1] if i >= len(xs)
                                                        else xs[i])
            for i, t in enumerate(transition)]
      xs = getattr(self, f'stage{stage}')(xs)
    return self.final_layer(xs[0])


class _ListModule(tnn.Module):
  """Lets a module taking a list sit in nn.Sequential, without a key level."""

  def __init__(self, module):
    super().__init__()
    self.inner = module

  def forward(self, xs):
    return self.inner(xs)


# ------------------------------------------------------------ helpers

def _randomise(variables, seed=0):
  """Random weights and BN statistics, so no layer is close to identity."""
  rng = np.random.default_rng(seed)
  flat = traverse_util.flatten_dict(variables)
  out = {}
  for path, x in flat.items():
    if path[-1] == 'var':
      out[path] = rng.uniform(0.5, 1.5, x.shape).astype(np.float32)
    elif path[-1] == 'scale':
      out[path] = rng.uniform(0.5, 1.5, x.shape).astype(np.float32)
    elif path[-1] == 'kernel':
      fan_in = np.prod(x.shape[:-1])
      out[path] = (rng.standard_normal(x.shape) / np.sqrt(fan_in)).astype(
          np.float32)
    else:
      out[path] = (0.1 * rng.standard_normal(x.shape)).astype(np.float32)
  return traverse_util.unflatten_dict(out)


def _load_into_torch(module, variables):
  """Flax variables -> the PyTorch module, every parameter and buffer."""
  state = {}
  for path, x in traverse_util.flatten_dict(variables).items():
    x = np.asarray(x)
    if x.ndim == 4:
      x = x.transpose(3, 2, 0, 1)
    state[hrnet.torch_state_dict_key(path[1:])] = torch.from_numpy(x.copy())
  # nn.Sequential wrappers around list-taking modules add '.inner'.
  expected = module.state_dict()
  renamed = {}
  for key in expected:
    plain = key.replace('.inner', '')
    if plain in state:
      renamed[key] = state.pop(plain)
  assert not state, f'Flax variables with no PyTorch counterpart: {sorted(state)[:5]}'
  missing = [k for k in expected if k not in renamed
             and not k.endswith('num_batches_tracked')]
  assert not missing, f'PyTorch entries not set: {missing[:5]}'
  module.load_state_dict(renamed, strict=False)
  return module.eval()


def _nchw(x):
  return torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy())


def _nhwc(t):
  return t.detach().numpy().transpose(0, 2, 3, 1)


# ------------------------------------------------------------ tests

def test_basic_block_with_projection_matches_pytorch():
  block = common.BasicBlock(12, strides=2, downsample=True)
  x = np.random.default_rng(1).standard_normal((2, 10, 8, 6)).astype(np.float32)
  variables = _randomise(block.init(jax.random.key(0), jnp.asarray(x)))
  ours = block.apply(variables, jnp.asarray(x))
  theirs = _load_into_torch(
      TorchBasicBlock(6, 12, 2, _projection(6, 12, 2)), variables)(_nchw(x))
  np.testing.assert_allclose(ours, _nhwc(theirs), atol=_TOL, rtol=0)


def test_fusion_module_matches_pytorch():
  widths = (4, 8, 16)
  module = hrnet.HighResolutionModule(widths, num_blocks=1)
  rng = np.random.default_rng(2)
  xs = [rng.standard_normal((2, 16 // 2**b, 12 // 2**b, w)).astype(np.float32)
        for b, w in enumerate(widths)]
  variables = _randomise(module.init(jax.random.key(0), [jnp.asarray(x) for x in xs]))
  ours = module.apply(variables, [jnp.asarray(x) for x in xs])
  theirs = _load_into_torch(TorchHRModule(widths, 1), variables)(
      [_nchw(x) for x in xs])
  assert len(ours) == len(theirs) == 3
  for a, b in zip(ours, theirs):
    np.testing.assert_allclose(a, _nhwc(b), atol=_TOL, rtol=0)


def test_whole_narrow_hrnet_matches_pytorch():
  sizes = dict(stem_width=16, stage1_blocks=2, widths=(8, 16, 32),
               num_modules=(1, 2), num_blocks=2)
  model = hrnet.HRNet(num_keypoints=5, **sizes)
  x = np.random.default_rng(3).standard_normal((2, 64, 48, 3)).astype(np.float32)
  variables = _randomise(model.init(jax.random.key(0), jnp.asarray(x)), seed=4)
  ours = model.apply(variables, jnp.asarray(x))
  assert len(ours) == 1
  theirs = _load_into_torch(TorchPoseHRNet(5, **sizes), variables)(_nchw(x))
  assert theirs.shape == (2, 5, 16, 12)
  np.testing.assert_allclose(ours[0], _nhwc(theirs), atol=_TOL, rtol=0)
