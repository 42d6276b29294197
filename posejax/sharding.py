"""Device mesh and shardings: the batch is split over `data`, state replicated."""

from __future__ import annotations

import jax
from jax.experimental import multihost_utils
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def make_mesh(mesh_config, devices=None) -> Mesh:
  """A 1-D mesh with axis `data`; `mesh.data = -1` takes every device.

  With several processes the mesh spans every device of every process.
  """
  devices = list(jax.devices() if devices is None else devices)
  size = mesh_config.data
  if size == -1:
    size = len(devices)
  if size < 1 or size > len(devices):
    raise ValueError(
        f'mesh.data = {mesh_config.data} but {len(devices)} device(s) are '
        'visible; use -1 for all of them.')
  if jax.process_count() > 1 and size != len(devices):
    raise ValueError(
        f'mesh.data = {mesh_config.data}: a run of {jax.process_count()} '
        f'processes uses all {len(devices)} devices (mesh.data = -1).')
  return Mesh(np.asarray(devices[:size]), ('data',))


def data_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over `data`."""
  return NamedSharding(mesh, P('data'))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def check_batch_size(batch_size: int, mesh: Mesh, what: str) -> None:
  """A global batch must split evenly over the devices (and so the processes)."""
  n = mesh.shape['data']
  if batch_size % n:
    raise ValueError(
        f'{what} = {batch_size} is not divisible by the {n} devices of the '
        f'mesh ({jax.process_count()} process(es)); choose a multiple of {n}.')


def local_batch_size(batch_size: int) -> int:
  """This process's rows of a global batch."""
  return batch_size // jax.process_count()


def global_batch(local_batch: dict, mesh: Mesh) -> dict:
  """Host-local numpy arrays -> global jax.Arrays sharded over `data`."""
  sharding = data_sharding(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
      local_batch)


def host_rows(x: jax.Array, mesh: Mesh) -> np.ndarray:
  """The rows of a batch-sharded result that this process's devices hold.

  They are the rows this process fed in (`global_batch`), in order; with
  one process, the whole array.
  """
  if x.is_fully_addressable:
    return np.asarray(x)
  return np.asarray(multihost_utils.global_array_to_host_local_array(
      x, mesh, P('data')))


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
