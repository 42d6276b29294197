"""Device mesh and shardings: the batch is split over `data`, state replicated."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def make_mesh(mesh_config, devices=None) -> Mesh:
  """A 1-D mesh with axis `data`; `mesh.data = -1` takes every device."""
  devices = list(jax.devices() if devices is None else devices)
  size = mesh_config.data
  if size == -1:
    size = len(devices)
  if size < 1 or size > len(devices):
    raise ValueError(
        f'mesh.data = {mesh_config.data} but {len(devices)} device(s) are '
        'visible; use -1 for all of them.')
  return Mesh(np.asarray(devices[:size]), ('data',))


def data_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over `data`."""
  return NamedSharding(mesh, P('data'))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def check_batch_size(batch_size: int, mesh: Mesh, what: str) -> None:
  n = mesh.shape['data']
  if batch_size % (n * jax.process_count()):
    raise ValueError(
        f'{what} = {batch_size} is not divisible by the {n} devices of the '
        f'data axis times {jax.process_count()} process(es).')


def global_batch(local_batch: dict, mesh: Mesh) -> dict:
  """Host-local numpy arrays -> global jax.Arrays sharded over `data`."""
  sharding = data_sharding(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
      local_batch)


def pad_batch(batch: dict, size: int) -> tuple[dict, np.ndarray]:
  """A host batch padded to `size` rows, and the mask of its real rows.

  A short last batch is padded by repeating its last row, so that a jitted
  function sees one shape (compiles once) and every process runs the same
  number of steps; `valid` (size,) is False on the padding, which results
  and losses must drop.
  """
  n = len(next(iter(batch.values())))
  if n > size:
    raise ValueError(f'A batch of {n} rows does not fit in {size}.')
  valid = np.arange(size) < n
  if n == size:
    return dict(batch), valid
  return {k: np.concatenate([v, np.repeat(v[-1:], size - n, 0)])
          for k, v in batch.items()}, valid
