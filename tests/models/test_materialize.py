"""posejax's CPU settings (XLA flags, huge pages) and activation barriers."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest


def _run(code: str, *args: str, **env) -> str:
  environ = {k: v for k, v in os.environ.items()
             if k not in ('XLA_FLAGS', 'POSEJAX_KEEP_XLA_FLAGS',
                          'GLIBC_TUNABLES', 'POSEJAX_KEEP_MALLOC')}
  environ.update(env)
  return subprocess.run([sys.executable, '-c', textwrap.dedent(code), *args],
                        env=environ, check=True, capture_output=True,
                        text=True).stdout


def test_import_sets_both_cpu_flags_and_respects_the_users():
  code = 'import os, posejax; print(os.environ.get("XLA_FLAGS", ""))'
  flags = _run(code).split()
  assert '--xla_cpu_experimental_ynn_fusion_type=-individual_convolution' in flags
  assert '--xla_disable_hlo_passes=cse_barrier_expander' in flags
  # A flag the user set is left as it is; the other one is still added.
  flags = _run(code, XLA_FLAGS='--xla_disable_hlo_passes=foo').split()
  assert '--xla_disable_hlo_passes=foo' in flags
  assert not any('cse_barrier_expander' in f for f in flags)
  assert any('ynn_fusion_type' in f for f in flags)
  assert _run(code, POSEJAX_KEEP_XLA_FLAGS='1').strip() == ''


def test_programs_restart_with_huge_pages_where_they_help():
  import posejax
  code = """
      import json, os, sys, posejax
      print(json.dumps(['start', os.getpid()]), flush=True)
      posejax.restart_with_huge_pages()
      print(json.dumps(['run', os.getpid(), os.environ.get('GLIBC_TUNABLES'),
                        sys.argv[1:]]))
  """

  def run(**env):
    lines = [json.loads(l) for l in _run(code, 'a', '--b=1', **env).splitlines()]
    *starts, (_, pid, tunables, args) = lines
    # Started once, or twice in the same process (exec keeps the pid).
    assert len(starts) in (1, 2) and all(s == ['start', pid] for s in starts)
    assert args == ['a', '--b=1']  # The command line survives a restart.
    return len(starts) == 2, tunables

  helps = posejax._huge_pages_would_help()  # Linux, glibc, THP `madvise`.
  assert run() == ((True, 'glibc.malloc.hugetlb=1') if helps else (False, None))
  other = 'glibc.malloc.arena_max=4'
  assert run(GLIBC_TUNABLES=other) == (
      (True, other + ':glibc.malloc.hugetlb=1') if helps else (False, other))
  # The user's own choice, or an opt-out, is left alone.
  assert run(GLIBC_TUNABLES='glibc.malloc.hugetlb=0') == (
      False, 'glibc.malloc.hugetlb=0')
  assert run(POSEJAX_KEEP_MALLOC='1') == (False, None)


@pytest.mark.slow
def test_barriers_survive_to_the_compiled_train_graph():
  # Without them XLA:CPU recomputes a residual stream in every consumer.
  out = _run("""
      import posejax
      import jax, jax.numpy as jnp
      from posejax.models import common

      def loss(w, x):
        for _ in range(4):
          y = jax.lax.conv_general_dilated(x, w, (1, 1), 'SAME',
              dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
          x = common.relu(y + x)
        return jnp.sum(x ** 2)

      x = jnp.ones((2, 8, 8, 4)); w = jnp.ones((3, 3, 4, 4)) * 0.01
      text = jax.jit(jax.grad(loss)).lower(w, x).compile().as_text()
      print(text.count('opt-barrier('))
      """)
  assert int(out.strip()) >= 4


def test_materialize_is_the_identity_with_an_identity_gradient():
  import jax
  import jax.numpy as jnp
  from posejax.models import common

  x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 5)), jnp.float32)
  w = jnp.arange(15.0).reshape(3, 5)
  np.testing.assert_array_equal(common.relu(x), jax.nn.relu(x))
  ours = jax.jit(jax.grad(lambda x: jnp.sum(common.relu(x) * w)))(x)
  plain = jax.grad(lambda x: jnp.sum(jax.nn.relu(x) * w))(x)
  np.testing.assert_array_equal(ours, plain)
