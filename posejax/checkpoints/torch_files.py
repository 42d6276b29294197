"""State-dict files and the key bookkeeping every conversion shares.

A state dict here is key -> numpy array. `.pth`/`.pt` files need torch,
imported only when one is read; `.npz` and `.safetensors` files with the same
keys need none.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

# Wrappers that prefix every key: nn.DataParallel ('module.') and the
# princeton-vl trainer ('model.module.').
_KEY_PREFIXES = ('', 'module.', 'model.module.', 'model.')


def strip_prefix(state_dict: Mapping[str, Any], expected: set[str]):
  """Drops a wrapper prefix, choosing the one that matches the most keys."""
  def matches(prefix):
    return sum(k[len(prefix):] in expected for k in state_dict
               if k.startswith(prefix))
  best = max(_KEY_PREFIXES, key=matches)
  return {(k[len(best):] if k.startswith(best) else k): v
          for k, v in state_dict.items()}


def listing(title: str, items: list[str], limit: int = 10) -> str:
  shown = ', '.join(items[:limit])
  more = f' and {len(items) - limit} more' if len(items) > limit else ''
  return f'{len(items)} {title}: {shown}{more}'


def key_problems(missing: list[str], misshaped: list[str],
                 unexpected: list[str]) -> list[str]:
  """The listings of a conversion error, one for each list that is not empty."""
  titled = (('missing keys', missing),
            ('mis-shaped keys (converted != expected)', misshaped),
            ('unexpected keys', unexpected))
  return [listing(title, items) for title, items in titled if items]


def load_torch_state_dict(path: str) -> dict[str, np.ndarray]:
  """Reads a `.pth`/`.pt` file (a state dict, or a dict holding one)."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise SystemExit(
        "posejax: reading PyTorch checkpoints needs torch: "
        "pip install -e '.[torch]'") from None
  obj = torch.load(path, map_location='cpu', weights_only=True)
  if isinstance(obj, Mapping) and 'state_dict' in obj:
    obj = obj['state_dict']
  if not isinstance(obj, Mapping):
    raise ValueError(f'{path} holds a {type(obj).__name__}, not a state dict.')
  return {k: v.detach().float().numpy() if v.is_floating_point()
          else v.numpy() for k, v in obj.items()}


def load_state_dict(path: str) -> dict[str, np.ndarray]:
  """Reads a `.npz` or `.safetensors` file by its name, anything else as `.pth`."""
  if path.endswith('.npz'):
    with np.load(path, allow_pickle=False) as archive:
      return {k: archive[k] for k in archive.files}
  if path.endswith('.safetensors'):
    from safetensors import numpy as safetensors_numpy  # pylint: disable=g-import-not-at-top
    return dict(safetensors_numpy.load_file(path))
  return load_torch_state_dict(path)


def write_state_dict(state_dict: Mapping[str, np.ndarray], path: str) -> None:
  """Writes a `.npz` file, or a `.safetensors` one for any other name."""
  arrays = {k: np.ascontiguousarray(v) for k, v in state_dict.items()}
  if path.endswith('.npz'):
    np.savez(path, **arrays)
  else:
    from safetensors import numpy as safetensors_numpy  # pylint: disable=g-import-not-at-top
    safetensors_numpy.save_file(arrays, path)
