"""Shared fixtures and helpers. Data is generated here, never downloaded.

Tests import the helpers with `from conftest import REPO, run_python`.
Markers (pyproject.toml): `slow` (a whole training run, a large network or
several processes: left out of the fast tier, `pytest -m "not slow"`),
`multiprocess`, `notebook`, `torch` (needs PyTorch).
"""

import os
import subprocess
import sys
import tempfile

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# Several tests compile the same small train and predict steps (in this
# process and in subprocesses); a shared persistent cache compiles each once.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR',
                      tempfile.mkdtemp(prefix='posejax_test_jax_cache_'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '1')

# Shared test helpers (`import reference_layouts`) live in tests/, which is not
# a package; pytest's default import mode already puts this directory on the
# path, this makes it independent of --import-mode.
_TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if _TESTS_DIR not in sys.path:
  sys.path.insert(0, _TESTS_DIR)

import pytest

# The repository root: commands and config paths are relative to it.
REPO = os.path.dirname(_TESTS_DIR)


def run_python(*args, timeout: float = 300, env=None):
  """`python ARGS` in a subprocess from the repository root, JAX on the CPU,
  output captured as text; `env` adds to (or overrides) the environment."""
  return subprocess.run([sys.executable, *args], cwd=REPO,
                        env={**os.environ, 'JAX_PLATFORMS': 'cpu', **(env or {})},
                        capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope='session')
def smoke_config():
  """get_config of configs/synthetic.py (e.g. `smoke_config('smoke')`)."""
  import recipe_configs
  return lambda variant=None: recipe_configs.load_config('synthetic', variant or '')


@pytest.fixture(scope='session')
def smoke_data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('tfds'))


@pytest.fixture(scope='session')
def smoke_builder(smoke_config, smoke_data_dir):
  from posejax import data
  config = smoke_config('smoke')
  config.dataset.data_dir = smoke_data_dir
  return data.get_builder(config.dataset)
