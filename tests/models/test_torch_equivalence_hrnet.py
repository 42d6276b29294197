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


from torch_reference import (  # noqa: E402
    TorchBasicBlock, TorchHRModule, TorchPoseHRNet, projection)

pytestmark = pytest.mark.torch


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

@pytest.mark.slow
def test_basic_block_with_projection_matches_pytorch():
  block = common.BasicBlock(12, strides=2, downsample=True)
  x = np.random.default_rng(1).standard_normal((2, 10, 8, 6)).astype(np.float32)
  variables = _randomise(block.init(jax.random.key(0), jnp.asarray(x)))
  ours = block.apply(variables, jnp.asarray(x))
  theirs = _load_into_torch(
      TorchBasicBlock(6, 12, 2, projection(6, 12, 2)), variables)(_nchw(x))
  np.testing.assert_allclose(ours, _nhwc(theirs), atol=_TOL, rtol=0)


@pytest.mark.slow
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


@pytest.mark.slow
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
