"""Shared fixtures. Data is generated here, never downloaded."""

import os
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
