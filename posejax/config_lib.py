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


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing that turns a misspelt `--config.x.y` into one message.

  ml_collections raises a bare KeyError/AttributeError from deep inside flag
  parsing; pass this as `app.run(main, flags_parser=parse_flags)`.
  """
  from absl import flags
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError) as e:
    name = str(e).strip('"\'')
    given = [a.split('=')[0] for a in argv if a.startswith('--config.')]
    culprit = [a for a in given if name in a.split('.')] or given
    raise SystemExit(
        f'Unknown config field {name!r} in {", ".join(culprit)}: an override '
        'can only set a field the config file defines; check the spelling '
        'against the config file.') from None
