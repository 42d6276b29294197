"""posejax: multi-stage 2D keypoint networks in JAX/Flax."""

import importlib.metadata
import importlib.util
import os
import sys


def _cpu_only_jax() -> bool:
  """Whether JAX will run on the CPU only (no accelerator plugin installed)."""
  return not any(
      importlib.util.find_spec(plugin) is not None
      for plugin in ('jax_cuda12_plugin', 'jax_cuda13_plugin', 'libtpu'))


# jaxlib releases (major, minor) on which the XLA:CPU flags below were
# measured to help (docs/performance.md, "CPU speed"); constraints.txt pins
# the versions every published figure was measured with.
MEASURED_JAXLIB = frozenset({(0, 10)})


def _set_cpu_xla_defaults() -> None:
  """Picks XLA:CPU settings that make the convolutional train step fast.

  Two settings (their effect is measured in docs/performance.md, "CPU speed"):
  * With jaxlib 0.10, XLA:CPU hands each convolution to YNNPACK; for the
    convolutions of these networks (and their gradients) its path without
    YNNPACK is faster.
  * XLA:CPU removes optimization barriers before fusion; keeping them lets
    `posejax.models.common.materialize` stop the fusion pass from
    recomputing a residual stream in every consumer.
  The flags must be set before JAX starts, so they are set on import of
  posejax, only when nothing decided otherwise: not if JAX is already
  imported, not for a flag XLA_FLAGS already mentions, not if an accelerator
  plugin is installed, and not if POSEJAX_KEEP_XLA_FLAGS is set. And only
  for the jaxlib releases they were measured with (`MEASURED_JAXLIB`): both
  flags are experimental, and XLA aborts at start on a flag it no longer
  knows.
  """
  if 'jax' in sys.modules or os.environ.get('POSEJAX_KEEP_XLA_FLAGS'):
    return
  if not _cpu_only_jax():
    return
  try:
    release = tuple(int(v) for v in importlib.metadata.version('jaxlib').split('.')[:2])
  except (importlib.metadata.PackageNotFoundError, ValueError):
    return
  if release not in MEASURED_JAXLIB:
    return
  flags = os.environ.get('XLA_FLAGS', '')
  added = [
      f'--{name}={value}' for name, value in (
          ('xla_cpu_experimental_ynn_fusion_type', '-individual_convolution'),
          ('xla_disable_hlo_passes', 'cse_barrier_expander'))
      if name not in flags]
  os.environ['XLA_FLAGS'] = ' '.join([flags, *added]).strip()


# glibc tunable (2.35+): malloc advises the kernel to back the memory it maps
# with transparent huge pages.
HUGE_PAGE_TUNABLE = 'glibc.malloc.hugetlb=1'


def restart_with_huge_pages() -> None:
  """Restarts the running program so that malloc uses transparent huge pages.

  Each execution of a compiled step on XLA:CPU allocates its temporaries as
  one block (gigabytes for a large network's train step) and frees it at the
  end. glibc maps such a block afresh each time, so the kernel faults in and
  zeroes it 4 KiB at a time, a sizeable part of the step's CPU time. With the
  tunable `glibc.malloc.hugetlb=1` malloc asks for 2 MiB pages instead
  (measured in docs/performance.md, "CPU speed").

  Tunables are read when a process starts, so the program is executed anew
  with `GLIBC_TUNABLES` extended; the command-line entry points call this
  first. Nothing happens (the call returns) unless it can help: on Linux with
  glibc >= 2.35, transparent huge pages in `madvise` mode (with `always` the
  kernel uses them anyway), JAX on the CPU only, no `glibc.malloc.hugetlb`
  in `GLIBC_TUNABLES` already, and `POSEJAX_KEEP_MALLOC` unset.
  """
  if not _huge_pages_would_help():
    return
  env = dict(os.environ)
  env['GLIBC_TUNABLES'] = ':'.join(
      filter(None, (env.get('GLIBC_TUNABLES'), HUGE_PAGE_TUNABLE)))
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, sys.orig_argv, env)


def _huge_pages_would_help() -> bool:
  if (sys.platform != 'linux' or os.environ.get('POSEJAX_KEEP_MALLOC')
      or 'glibc.malloc.hugetlb' in os.environ.get('GLIBC_TUNABLES', '')):
    return False
  try:
    libc, version = os.confstr('CS_GNU_LIBC_VERSION').split()
    glibc_version = tuple(int(v) for v in version.split('.')[:2])
    with open('/sys/kernel/mm/transparent_hugepage/enabled') as f:
      thp_mode = f.read()
  except (AttributeError, ValueError, OSError):
    return False
  return (libc == 'glibc' and glibc_version >= (2, 35)
          and '[madvise]' in thp_mode and _cpu_only_jax())


_set_cpu_xla_defaults()
