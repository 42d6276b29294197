"""posejax: multi-stage 2D keypoint networks in JAX/Flax."""

import importlib.metadata
import importlib.util
import os
import sys


def _set_cpu_xla_defaults() -> None:
  """Picks XLA:CPU settings that make the convolutional train step fast.

  With jaxlib 0.10, XLA:CPU hands each convolution to YNNPACK; for the
  convolutions of these networks (and their gradients) the default path is
  about 2x faster (measured on the quickstart HRNet train step, 2-core x86
  CPU: 0.85 s -> 0.43 s). The flag must be set before JAX starts, so it is set
  on import of posejax, only when nothing decided otherwise: not if JAX is
  already imported, not if XLA_FLAGS already mentions it, not if an
  accelerator plugin is installed, and not if POSEJAX_KEEP_XLA_FLAGS is set.
  """
  if 'jax' in sys.modules or os.environ.get('POSEJAX_KEEP_XLA_FLAGS'):
    return
  flags = os.environ.get('XLA_FLAGS', '')
  if 'xla_cpu_experimental_ynn_fusion_type' in flags:
    return
  for plugin in ('jax_cuda12_plugin', 'jax_cuda13_plugin', 'libtpu'):
    if importlib.util.find_spec(plugin) is not None:
      return
  try:
    major, minor = (int(v) for v in importlib.metadata.version('jaxlib').split('.')[:2])
  except (importlib.metadata.PackageNotFoundError, ValueError):
    return
  if (major, minor) < (0, 10):  # The flag does not exist before 0.10.
    return
  os.environ['XLA_FLAGS'] = (
      flags + ' --xla_cpu_experimental_ynn_fusion_type=-individual_convolution').strip()


_set_cpu_xla_defaults()
