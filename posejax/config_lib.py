"""Config checks that run before anything is built or compiled."""

from __future__ import annotations

SECTIONS = ('model', 'dataset', 'input', 'codec', 'loss', 'optim', 'train',
            'eval', 'mesh')


def validate(config) -> None:
  """Raises one clear error for a config that cannot run."""
  missing = [s for s in SECTIONS if s not in config]
  if missing:
    raise ValueError(f'Config lacks the section(s) {missing}; every config '
                     f'has {list(SECTIONS)} (see configs/synthetic.py).')
  size = tuple(config.input.size)
  if len(size) != 2 or min(size) <= 0:
    raise ValueError(f'input.size must be (height, width), got {size}.')
  if config.train.num_steps <= 0:
    raise ValueError(f'train.num_steps must be positive, got {config.train.num_steps}.')
  for field in ('log_every_steps', 'checkpoint_every_steps'):
    if config.train[field] <= 0:
      raise ValueError(f'train.{field} must be positive, got {config.train[field]}.')


def flatten(config, prefix: str = '') -> dict:
  """Nested config -> {'a.b': value} with values a writer can log."""
  flat = {}
  for key, value in config.items():
    name = f'{prefix}{key}'
    if hasattr(value, 'items'):
      flat.update(flatten(value, name + '.'))
    elif isinstance(value, (int, float, str, bool)):
      flat[name] = value
    else:
      flat[name] = str(value)
  return flat
