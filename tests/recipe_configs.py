"""The recipes of configs/ and their variants, as the recipe modules state them.

`load_config` loads configs/<name>.py as `--config=configs/<name>.py:<variant>`
does; `NAMES` and `variant_args` read the recipes, their `VARIANTS` and
their `EXCLUSIVE` groups (where they have any) from the modules, so that a
new recipe or variant is tested without being listed here.
"""

import functools
import glob
import importlib.util
import itertools
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Every recipe, by file name.
NAMES = tuple(sorted(os.path.splitext(os.path.basename(p))[0]
                     for p in glob.glob(os.path.join(REPO, 'configs', '*.py'))))


@functools.cache
def load_module(name: str):
  """configs/<name>.py as a module (loaded once)."""
  spec = importlib.util.spec_from_file_location(
      f'recipe_{name}', os.path.join(REPO, 'configs', f'{name}.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load_config(name: str, variant: str = ''):
  return load_module(name).get_config(variant or None)


def exclusive(name: str) -> tuple[tuple[str, ...], ...]:
  """The recipe's groups of variants of which one at most (none if unstated)."""
  return tuple(map(tuple, getattr(load_module(name), 'EXCLUSIVE', ())))


def _choices(name: str) -> list[tuple[str, ...]]:
  """Per dimension of the recipe, what can be given: nothing or one variant.

  A group's first variant is the default (config_lib.choose), the same config
  as giving none, so it is left out; `smoke` is left out too.
  """
  groups = exclusive(name)
  grouped = {v for group in groups for v in group}
  free = [v for v in load_module(name).VARIANTS if v not in grouped and v != 'smoke']
  return [('', *group[1:]) for group in groups] + [('', v) for v in free]


def variant_args(name: str, every: bool = False) -> list[str]:
  """The `:arg`s of the recipe's distinct configs, without smoke.

  With `every`, every combination; else '', each variant alone and, where
  variants combine, all of them together (each group's last).
  """
  choices = _choices(name)
  if every:
    combos = itertools.product(*choices)
  else:
    singles = [tuple(v if j == i else '' for j in range(len(choices)))
               for i, c in enumerate(choices) for v in c[1:]]
    combos = [('',) * len(choices), *singles]
    if len(choices) > 1:
      combos.append(tuple(c[-1] for c in choices))
  args = [','.join(filter(None, c)) for c in combos]
  return list(dict.fromkeys(args))


def recipes(every: bool = False, synthetic: bool = True) -> list[tuple[str, str]]:
  """(name, arg) of every recipe's variants (`variant_args`).

  Without `synthetic`, only the recipes of real datasets, which the tests
  build from fixtures in their upstream formats (the synthetic one
  generates its own data).
  """
  return [(name, arg) for name in NAMES
          if synthetic or load_config(name).dataset.config != 'synthetic'
          for arg in variant_args(name, every)]
