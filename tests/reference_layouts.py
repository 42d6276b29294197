"""Reference PyTorch state-dict layouts and random weights for the tests.

The listings in tests/fixtures/torch_state_dicts/*.txt hold one line per entry
of an official state dict, `key<TAB>shape<TAB>dtype<TAB>kind` (kind is
`param`, `param_unused` or `buffer`), with `#` comment lines; they ship with
the tests. Test modules import this one as `reference_layouts` (tests/ is on
`sys.path`, see tests/conftest.py).
"""

from __future__ import annotations

import ast
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

FIXTURES = (pathlib.Path(__file__).resolve().parent / 'fixtures' /
            'torch_state_dicts')


def listing_path(name: str) -> pathlib.Path:
  """Path of a listing; `name` is its file name, with or without `.txt`."""
  return FIXTURES / (name if name.endswith('.txt') else f'{name}.txt')


def read_listing(name: str) -> dict[str, tuple[tuple[int, ...], str, str]]:
  """An official state-dict listing: key -> (shape, dtype, kind), file order.

  Args:
    name: file name in tests/fixtures/torch_state_dicts, e.g.
      `'hrnet_w32_official'` (`.txt` optional).

  Fails the calling test if the listing is missing.
  """
  path = listing_path(name)
  if not path.exists():
    pytest.fail(
        f'Reference state-dict listing not found at {path}; it ships with '
        'the tests (tests/fixtures/torch_state_dicts).')
  entries = {}
  for line in path.read_text().splitlines():
    if not line or line.startswith('#'):
      continue
    key, shape, dtype, kind = line.split('\t')
    entries[key] = (tuple(ast.literal_eval(shape)), dtype, kind)
  return entries


def random_state_dict(name: str, seed: int = 0) -> dict[str, np.ndarray]:
  """Random values in the exact key/shape layout of an official state dict.

  float32 entries are standard normal; int64 ones (`num_batches_tracked`)
  are scalars in [0, 1000).
  """
  rng = np.random.default_rng(seed)
  state_dict = {}
  for key, (shape, dtype, _) in read_listing(name).items():
    if dtype == 'int64':
      state_dict[key] = np.array(rng.integers(0, 1000), np.int64)
    else:
      state_dict[key] = rng.standard_normal(shape).astype(np.float32)
  return state_dict


def random_variables(abstract, seed: int = 0, kernel_gain: float = 1.0):
  """Concrete Flax variables without compiling initialisers (slow on XLA:CPU).

  Kernels ~ N(0, kernel_gain / fan_in), BN scales and running variances
  ~ U(0.5, 1.5), biases and running means ~ U(-0.1, 0.1).

  Args:
    abstract: variables tree of `jax.ShapeDtypeStruct`s (`jax.eval_shape` of
      `model.init`).
    seed: numpy seed.
    kernel_gain: 1 keeps activations' scale for linear layers, 2 for ReLU.
  """
  rng = np.random.default_rng(seed)

  def fill(path, x):
    leaf = path[-1].key
    if leaf == 'kernel':
      fan_in = np.prod(x.shape[:-1])
      value = rng.normal(0.0, np.sqrt(kernel_gain / fan_in), x.shape)
    elif leaf in ('scale', 'var'):
      value = rng.uniform(0.5, 1.5, x.shape)
    else:  # bias, mean
      value = rng.uniform(-0.1, 0.1, x.shape)
    return jnp.asarray(value, x.dtype)

  return jax.tree_util.tree_map_with_path(fill, abstract)


def init_like_variables(abstract, kernel, seed: int = 0,
                        bias_bound: float = 0.0):
  """Concrete variables shaped like an initialiser's output, from numpy.

  XLA:CPU compiles a threefry draw per layer slowly, so tests of whole
  networks fill their variables here; the initialisers themselves are tested
  on single layers.

  Args:
    abstract: variables tree of `jax.ShapeDtypeStruct`s.
    kernel: (numpy Generator, shape) -> kernel values.
    seed: numpy seed.
    bias_bound: biases ~ U(-bias_bound, bias_bound) (0: zeros).

  Returns:
    The tree with kernels from `kernel`, BN scales and running variances 1,
    running means 0.
  """
  rng = np.random.default_rng(seed)

  def fill(path, x):
    leaf = path[-1].key
    if leaf == 'kernel':
      value = kernel(rng, x.shape)
    elif leaf in ('scale', 'var'):
      value = np.ones(x.shape)
    elif leaf == 'bias' and bias_bound:
      value = rng.uniform(-bias_bound, bias_bound, x.shape)
    else:  # bias, mean
      value = np.zeros(x.shape)
    return jnp.asarray(value, x.dtype)

  return jax.tree_util.tree_map_with_path(fill, abstract)
