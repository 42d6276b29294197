"""posejax: multi-stage 2D keypoint networks in JAX/Flax."""

import importlib.metadata
import importlib.util
import os
import sys


def _set_cpu_xla_defaults() -> None:
  """Picks XLA:CPU settings that make the convolutional train step fast.

  Two settings, each measured on a 2-core x86 CPU with jaxlib 0.10:
  * With jaxlib 0.10, XLA:CPU hands each convolution to YNNPACK; for the
    convolutions of these networks (and their gradients) the default path is
    about 2x faster (the quickstart HRNet train step: 0.85 s -> 0.43 s).
  * XLA:CPU removes optimization barriers before fusion; keeping them lets
    `posejax.models.common.materialize` stop the fusion pass from
    recomputing a residual stream in every consumer (HRNet-W32 train step at
    128x96, batch 4: 2.1 s -> 1.0 s).
  The flags must be set before JAX starts, so they are set on import of
  posejax, only when nothing decided otherwise: not if JAX is already
  imported, not for a flag XLA_FLAGS already mentions, not if an accelerator
  plugin is installed, and not if POSEJAX_KEEP_XLA_FLAGS is set.
  """
  if 'jax' in sys.modules or os.environ.get('POSEJAX_KEEP_XLA_FLAGS'):
    return
  for plugin in ('jax_cuda12_plugin', 'jax_cuda13_plugin', 'libtpu'):
    if importlib.util.find_spec(plugin) is not None:
      return
  try:
    major, minor = (int(v) for v in importlib.metadata.version('jaxlib').split('.')[:2])
  except (importlib.metadata.PackageNotFoundError, ValueError):
    return
  if (major, minor) < (0, 10):  # The YNN flag does not exist before 0.10.
    return
  flags = os.environ.get('XLA_FLAGS', '')
  added = [
      f'--{name}={value}' for name, value in (
          ('xla_cpu_experimental_ynn_fusion_type', '-individual_convolution'),
          ('xla_disable_hlo_passes', 'cse_barrier_expander'))
      if name not in flags]
  os.environ['XLA_FLAGS'] = ' '.join([flags, *added]).strip()


_set_cpu_xla_defaults()
