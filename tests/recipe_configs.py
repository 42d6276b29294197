"""Loading configs/<name>.py as `--config=configs/<name>.py:<variant>` does."""

import importlib.util
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(name: str, variant: str = ''):
  spec = importlib.util.spec_from_file_location(
      f'recipe_{name}', os.path.join(REPO, 'configs', f'{name}.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(variant or None)
