"""The CPU-only settings of `import posejax` stay off where an accelerator is.

`posejax/__init__.py` sets two XLA:CPU flags and restarts the command-line
entry points with huge-page malloc, and `models.common.materialize` adds an
optimization barrier: all measured for XLA:CPU only. On a GPU or TPU machine
(a JAX plugin installed) none of them may apply.
"""

import importlib.util
import os
import subprocess
import sys

import jax
import numpy as np

import posejax
from posejax.models import common

PLUGINS = ('jax_cuda12_plugin', 'jax_cuda13_plugin', 'libtpu')


def _pretend_installed(monkeypatch, plugin):
  real = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, 'find_spec',
                      lambda name, *a: object() if name == plugin else real(name, *a))


def test_cpu_flags_are_set_only_without_an_accelerator_plugin(monkeypatch):
  monkeypatch.delitem(sys.modules, 'jax')  # as before JAX is imported
  monkeypatch.delenv('POSEJAX_KEEP_XLA_FLAGS', raising=False)
  monkeypatch.setenv('XLA_FLAGS', '--xla_dump_to=/tmp/x')
  posejax._set_cpu_xla_defaults()
  cpu_flags = os.environ['XLA_FLAGS']
  assert cpu_flags.startswith('--xla_dump_to=/tmp/x ')
  assert 'cse_barrier_expander' in cpu_flags and 'ynn_fusion_type' in cpu_flags
  for plugin in PLUGINS:
    with monkeypatch.context() as m:
      _pretend_installed(m, plugin)
      m.setenv('XLA_FLAGS', '--xla_dump_to=/tmp/x')
      assert not posejax._cpu_only_jax()
      posejax._set_cpu_xla_defaults()
      assert os.environ['XLA_FLAGS'] == '--xla_dump_to=/tmp/x'
      assert not posejax._huge_pages_would_help()


def test_cpu_flags_only_for_the_jaxlib_releases_they_were_measured_on(monkeypatch):
  import importlib.metadata
  monkeypatch.delitem(sys.modules, 'jax')  # as before JAX is imported
  monkeypatch.delenv('POSEJAX_KEEP_XLA_FLAGS', raising=False)
  real = importlib.metadata.version
  for version, expected in (('0.10.2', True), ('0.11.0', False), ('0.9.1', False)):
    monkeypatch.setattr(importlib.metadata, 'version',
                        lambda name: version if name == 'jaxlib' else real(name))
    monkeypatch.setenv('XLA_FLAGS', '')
    posejax._set_cpu_xla_defaults()
    assert ('cse_barrier_expander' in os.environ['XLA_FLAGS']) == expected, version


def test_materialize_adds_a_barrier_on_cpu_only(monkeypatch):
  x = np.ones((2, 3), np.float32)
  # A new function each time: JAX caches traces by function.
  jaxpr = lambda: str(jax.make_jaxpr(lambda v: common.materialize(v))(x))
  assert 'optimization_barrier' in jaxpr()
  monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
  assert 'optimization_barrier' not in jaxpr()


def test_an_entry_point_restarts_with_huge_pages_on_cpu_only(tmp_path):
  """`restart_with_huge_pages` re-executes a CPU-only process with the malloc
  tunable (where this machine's glibc and kernel allow it), and returns
  untouched where a (stub) accelerator plugin is importable."""
  (tmp_path / 'jax_cuda13_plugin').mkdir()
  (tmp_path / 'jax_cuda13_plugin' / '__init__.py').write_text('')
  code = ('import os, posejax; posejax.restart_with_huge_pages(); '
          "print(os.environ.get('GLIBC_TUNABLES', ''), '|', os.environ.get('XLA_FLAGS', ''))")
  env = {k: v for k, v in os.environ.items()
         if k not in ('GLIBC_TUNABLES', 'XLA_FLAGS', 'POSEJAX_KEEP_MALLOC')}

  def run(pythonpath):
    return subprocess.run([sys.executable, '-c', code],
                          env=dict(env, PYTHONPATH=pythonpath),
                          capture_output=True, text=True, check=True).stdout.strip()

  with_plugin = run(os.pathsep.join([str(tmp_path), env.get('PYTHONPATH', '')]))
  assert with_plugin == '|'
  if posejax._huge_pages_would_help():  # this machine: glibc >= 2.35, THP madvise
    tunables, flags = run(env.get('PYTHONPATH', '')).split('|')
    assert posejax.HUGE_PAGE_TUNABLE in tunables and 'cse_barrier_expander' in flags
