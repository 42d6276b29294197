r"""Parameter counts, forward FLOPs and output shapes of the pose networks.

  python -m posejax.models.summary
  python -m posejax.models.summary --model=hrnet:w48 --input=384x288
  python -m posejax.models.summary --model=cpm --keypoints=16 --flops=hlo

With no `--model`, prints one table row per network and preset of
`models.NETWORKS` (one row for a network without presets), each at its usual
input (`Network.usual`), row by row as they are measured.

FLOPs are XLA's cost analysis of the jitted eval-mode forward for one image:
`--flops=compiled` (default) reads the optimised executable, which on a CPU
means compiling the network (up to a minute or two for the large ones);
`--flops=hlo` reads the HLO before optimisation, in seconds, a few percent
lower (it leaves out some element-wise work); `--flops=none` skips them. XLA
counts a multiply-add as two FLOPs and skips the taps that fall on padding,
so papers' "GFLOPs" (multiply-adds: HRNet-W32 at 256x192 is 7.1) are about
half of these. Parameter counts come from `jax.eval_shape`: nothing is
allocated. The networks take normalised images; the normalisation (done by
the train and predict steps) is not counted.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from posejax import command
from posejax import models

# For a name that is not in `models.NETWORKS` (building it then fails with
# the known names).
FALLBACK_INPUT = ((256, 192), 17)

FLOPS_MODES = ('compiled', 'hlo', 'none')


@dataclasses.dataclass
class Summary:
  """What `summarize` measures for one network at one input size."""

  model: str  # 'name' or 'name:preset'
  input_size: tuple[int, int]
  num_keypoints: int
  params: int
  output_shapes: list[tuple[int, ...]]  # one per supervised stage
  flops: float | None  # forward, one image; None when not measured

  @property
  def gflops(self) -> float | None:
    return None if self.flops is None else self.flops / 1e9


def parse_model_spec(spec: str) -> tuple[str, str | None]:
  """'hrnet:w32' -> ('hrnet', 'w32'); 'cpm' -> ('cpm', None)."""
  name, _, preset = spec.partition(':')
  return name, preset or None


def parse_input_size(text: str) -> tuple[int, int]:
  """'256x192' -> (256, 192), height first."""
  try:
    height, width = (int(v) for v in text.lower().split('x'))
  except ValueError:
    raise ValueError(
        f'Input size must be HEIGHTxWIDTH, e.g. 256x192, got {text!r}.'
    ) from None
  if height < 1 or width < 1:
    raise ValueError(f'Input size must be positive, got {text!r}.')
  return height, width


def default_input(name: str,
                  preset: str | None) -> tuple[tuple[int, int], int]:
  """The usual ((height, width), num_keypoints) of a network and preset."""
  network = models.NETWORKS.get(name)
  return network.usual(preset) if network else FALLBACK_INPUT


def registered_specs() -> list[str]:
  """'name:preset' for every preset in `models.NETWORKS`, 'name' if none."""
  specs = []
  for name, network in models.NETWORKS.items():
    specs.extend([f'{name}:{p}' for p in network.presets] or [name])
  return specs


def build(spec: str, num_keypoints: int, dtype: str = 'float32'):
  """The module for 'name[:preset]' (the preset's fields, nothing else)."""
  name, preset = parse_model_spec(spec)
  config: dict[str, Any] = dict(name=name, dtype=dtype)
  if preset is not None:
    config['preset'] = preset
  return models.build_model(config, num_keypoints)


def abstract_variables(model, input_size: Sequence[int]):
  """Shapes and dtypes of the model's variables; nothing is computed."""
  x = jax.ShapeDtypeStruct((1, *input_size, 3), jnp.float32)
  return jax.eval_shape(functools.partial(model.init, train=False),
                        jax.random.key(0), x)


def count_parameters(variables) -> int:
  """Number of trainable parameters (BatchNorm statistics excluded)."""
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(
      variables['params']))


def forward_flops(model, variables, input_size: Sequence[int],
                  mode: str = 'compiled') -> float | None:
  """XLA's FLOP count of the eval-mode forward of one image."""
  if mode not in FLOPS_MODES:
    raise ValueError(f'flops mode must be one of {FLOPS_MODES}, got {mode!r}.')
  if mode == 'none':
    return None
  x = jax.ShapeDtypeStruct((1, *input_size, 3), jnp.float32)
  lowered = jax.jit(functools.partial(model.apply, train=False)).lower(
      variables, x)
  analysis = (lowered.compile() if mode == 'compiled' else
              lowered).cost_analysis()
  if isinstance(analysis, (list, tuple)):  # Older JAX: one dict per program.
    analysis = analysis[0]
  if not analysis or 'flops' not in analysis:
    return None
  return float(analysis['flops'])


def summarize(spec: str,
              input_size: Sequence[int] | None = None,
              num_keypoints: int | None = None,
              flops: str = 'compiled') -> Summary:
  """Parameters, output shapes and forward FLOPs of 'name[:preset]'.

  Args:
    spec: a key of `models.NETWORKS`, optionally ':' and a preset name.
    input_size: (height, width); default from `default_input`.
    num_keypoints: heatmap channels; default from `default_input`.
    flops: 'compiled', 'hlo' or 'none' (see the module docstring).

  Returns:
    A `Summary`.
  """
  default_size, default_k = default_input(*parse_model_spec(spec))
  input_size = tuple(input_size or default_size)
  num_keypoints = num_keypoints or default_k
  model = build(spec, num_keypoints)
  variables = abstract_variables(model, input_size)
  x = jax.ShapeDtypeStruct((1, *input_size, 3), jnp.float32)
  outputs = jax.eval_shape(functools.partial(model.apply, train=False),
                           variables, x)
  return Summary(
      model=spec, input_size=input_size, num_keypoints=num_keypoints,
      params=count_parameters(variables),
      output_shapes=[tuple(o.shape) for o in outputs],
      flops=forward_flops(model, variables, input_size, flops))


def _shapes(shapes: Sequence[tuple[int, ...]]) -> str:
  # Stages usually share one shape: '6 x (1, 32, 24, 17)'.
  if len(set(shapes)) == 1:
    return f'{len(shapes)} x {shapes[0]}'
  return ', '.join(str(s) for s in shapes)


_TABLE = '{:<24} {:>9} {:>4} {:>13} {:>8}  {}'


def table_header() -> str:
  return _TABLE.format('model', 'input', 'K', 'params', 'GFLOPs',
                       'outputs (per stage, batch 1)')


def table_row(s: Summary) -> str:
  gflops = 'n/a' if s.gflops is None else f'{s.gflops:.2f}'
  return _TABLE.format(
      s.model, f'{s.input_size[0]}x{s.input_size[1]}', s.num_keypoints,
      f'{s.params:,}', gflops, _shapes(s.output_shapes))


def define_flags() -> None:
  """The command-line flags, defined only when run as a program.

  absl flags are process-global: defining them on import would clash with
  `posejax.benchmark`'s `--model` wherever both modules are imported.
  """
  flags.DEFINE_string(
      'model', None, 'NAME[:PRESET], e.g. hrnet:w32; all registered if unset.')
  flags.DEFINE_string(
      'input', None, "HEIGHTxWIDTH, e.g. 256x192; the network's usual if unset.")
  flags.DEFINE_integer(
      'keypoints', None, "Heatmap channels; the network's usual if unset.")
  flags.DEFINE_enum(
      'flops', 'compiled', FLOPS_MODES,
      'compiled: cost analysis of the optimised executable (compiles); hlo: '
      'of the HLO before optimisation (seconds); none: skip.')


def main(values):
  try:
    input_size = parse_input_size(values.input) if values.input else None
  except ValueError as e:
    raise ValueError(f'--input: {e}') from None
  specs = [values.model] if values.model else registered_specs()
  print(f'backend: {jax.default_backend()}; FLOPs: {values.flops}', flush=True)
  print(table_header(), flush=True)
  rows = []
  for spec in specs:
    try:
      summary = summarize(spec, input_size, values.keypoints, values.flops)
    except ValueError as e:  # Unknown name/preset, bad size: say which.
      raise ValueError(f'{spec}: {e}') from None
    rows.append(summary)
    print(table_row(summary), flush=True)
  if len(rows) == 1:
    for i, shape in enumerate(rows[0].output_shapes, 1):
      print(f'  stage {i}: {shape}')


if __name__ == '__main__':
  define_flags()
  command.run(main, prefix='posejax.models.summary', huge_pages=False)
