"""Several processes, one run: JAX's distributed runtime and host collectives.

One process runs per host (a GPU node, a TPU VM worker); together they see
every device in one mesh (`sharding.make_mesh`). `initialize` starts JAX's
distributed runtime before anything touches a device:

* `--coordinator=HOST:PORT --num_processes=N --process_id=I` on plain hosts
  (or $POSEJAX_COORDINATOR, $POSEJAX_NUM_PROCESSES, $POSEJAX_PROCESS_ID);
* `--coordinator=auto`: JAX finds the cluster itself (SLURM, Open MPI, TPU
  pod slices, Kubernetes: whatever `jax.distributed.initialize()` knows);
* nothing: the same, but only where a launcher says there are several tasks
  ($SLURM_NTASKS, $OMPI_COMM_WORLD_SIZE > 1, several TPU worker hosts);
  otherwise the run stays one process.

The host-side collectives below (`allgather_bytes`, `check_same_config`,
`lockstep`) let every process agree on a config, run the same number of
evaluation steps and end with the same results. They are no-ops in a
single process. Everything here is importable without TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
import json
import os
import pickle
import socket
import sys
import time

from absl import flags
import jax
from jax.experimental import multihost_utils
import numpy as np

# Seconds to wait for every process to reach the coordinator.
DEFAULT_TIMEOUT_S = 300


def define_flags() -> None:
  """The launch flags of `posejax.main` and `posejax.eval`."""
  flags.DEFINE_string(
      'coordinator', None,
      "HOST:PORT of process 0 for a run of several processes, or 'auto' to "
      'let JAX detect the cluster (SLURM, Open MPI, TPU pods); default '
      '$POSEJAX_COORDINATOR, else one process unless a launcher says otherwise.')
  flags.DEFINE_integer('num_processes', None,
                       'Processes of the run (with --coordinator=HOST:PORT).')
  flags.DEFINE_integer('process_id', None,
                       'This process, 0..num_processes-1 (with --coordinator).')
  flags.DEFINE_integer('coordinator_timeout', DEFAULT_TIMEOUT_S,
                       'Seconds to wait for every process to join.')


def initialize_from_flags() -> bool:
  values = flags.FLAGS
  return initialize(values.coordinator, values.num_processes, values.process_id,
                    values.coordinator_timeout)


def _env_int(name: str) -> int | None:
  value = os.environ.get(name)
  if value in (None, ''):
    return None
  try:
    return int(value)
  except ValueError:
    raise ValueError(f'${name} must be an integer, got {value!r}.') from None


def launched_as_several() -> bool:
  """Whether a cluster launcher started this process as one of several."""
  for name in ('SLURM_STEP_NUM_TASKS', 'SLURM_NTASKS', 'OMPI_COMM_WORLD_SIZE'):
    if (_env_int(name) or 1) > 1:
      return True
  return ',' in os.environ.get('TPU_WORKER_HOSTNAMES', '')


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None,
               timeout_s: int = DEFAULT_TIMEOUT_S) -> bool:
  """Starts JAX's distributed runtime when this is one process of several.

  Returns whether it did. Raises ValueError with one line naming the fix for
  incomplete settings and for a coordinator not reached within `timeout_s`.
  """
  coordinator = coordinator or os.environ.get('POSEJAX_COORDINATOR') or None
  if num_processes is None:
    num_processes = _env_int('POSEJAX_NUM_PROCESSES')
  if process_id is None:
    process_id = _env_int('POSEJAX_PROCESS_ID')
  if coordinator == 'auto' or (coordinator is None and launched_as_several()):
    kwargs = {}  # JAX reads the cluster's own variables.
  elif coordinator is None:
    if num_processes not in (None, 1) or process_id not in (None, 0):
      raise ValueError('--num_processes and --process_id need --coordinator='
                       'HOST:PORT (the address of process 0).')
    return False
  else:
    missing = [name for name, value in (('--num_processes', num_processes),
                                        ('--process_id', process_id))
               if value is None]
    if missing:
      raise ValueError(f'--coordinator={coordinator} needs {" and ".join(missing)}'
                       ' (or $POSEJAX_NUM_PROCESSES, $POSEJAX_PROCESS_ID).')
    if ':' not in coordinator:
      raise ValueError(f'--coordinator must be HOST:PORT, got {coordinator!r}.')
    if not 0 <= process_id < num_processes:
      raise ValueError(f'--process_id={process_id} is not in 0..{num_processes - 1}.')
    kwargs = dict(coordinator_address=coordinator, num_processes=num_processes,
                  process_id=process_id)
  if kwargs and process_id > 0:
    # JAX's client aborts the process (no Python exception) when it cannot
    # register in time; an unreachable coordinator is found here first.
    _wait_for(coordinator, timeout_s)
  if kwargs and process_id == 0:
    print(f'posejax: process 0 of {num_processes} waits up to {timeout_s} s '
          f'for the others at {coordinator}; if they do not all start, JAX '
          'ends this process with DEADLINE_EXCEEDED.', file=sys.stderr, flush=True)
  try:
    jax.distributed.initialize(initialization_timeout=timeout_s, **kwargs)
  except Exception as e:  # pylint: disable=broad-except
    # JAX raises a long RuntimeError/XlaRuntimeError whose cause is buried.
    where = kwargs.get('coordinator_address', 'the detected cluster')
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise ValueError(
        f'Could not start the distributed runtime with {where}: {first[:300]}'
        ) from e
  return True


def _wait_for(coordinator: str, timeout_s: float) -> None:
  """Returns once HOST:PORT accepts a connection; ValueError after timeout_s."""
  host, _, port = coordinator.rpartition(':')
  deadline = time.monotonic() + timeout_s
  while True:
    try:
      with socket.create_connection((host.strip('[]'), int(port)), timeout=2):
        return
    except OSError as e:
      if time.monotonic() > deadline:
        raise ValueError(
            f'The coordinator {coordinator} did not answer within {timeout_s} s '
            f'({e.strerror or e}): is process 0 running there (the same command with '
            '--process_id=0)? Check the host name and that the port is open '
            'to this host, or raise --coordinator_timeout.') from None
      time.sleep(0.5)


# ----------------------------------------------------------- collectives

def allgather_bytes(data: bytes) -> list[bytes]:
  """Every process's `data`, in process order (a list of one alone)."""
  if jax.process_count() == 1:
    return [data]
  lengths = multihost_utils.process_allgather(np.asarray([len(data)], np.int64))
  lengths = np.asarray(lengths).reshape(-1)
  padded = np.zeros(int(lengths.max()), np.uint8)
  padded[:len(data)] = np.frombuffer(data, np.uint8)
  gathered = np.asarray(multihost_utils.process_allgather(padded))
  return [gathered[p, :n].tobytes() for p, n in enumerate(lengths)]


def allgather_objects(value) -> list:
  """Every process's picklable `value`, in process order."""
  if jax.process_count() == 1:
    return [value]
  return [pickle.loads(b) for b in allgather_bytes(pickle.dumps(value))]


def from_process_zero(value):
  """Process 0's `value` on every process (others may pass None)."""
  if jax.process_count() == 1:
    return value
  return allgather_objects(value if jax.process_index() == 0 else None)[0]


# Fields allowed to differ between hosts: where each finds its own files.
HOST_LOCAL_FIELDS = ('dataset.data_dir',)


def check_same_config(flat_config: dict) -> None:
  """Raises ValueError naming the fields where processes disagree.

  `flat_config` is the run's config flattened to dotted names
  (`config_lib.flatten`); every process must pass the same values, except
  the HOST_LOCAL_FIELDS.
  """
  if jax.process_count() == 1:
    return
  ours = {k: v for k, v in flat_config.items() if k not in HOST_LOCAL_FIELDS}
  text = json.dumps(ours, sort_keys=True, default=str)
  configs = [json.loads(t) for t in allgather_bytes(text.encode())]
  reference = configs[0]
  disagree = {}
  for process, theirs in enumerate(configs[1:], start=1):
    fields = sorted(k for k in set(reference) | set(theirs)
                    if reference.get(k) != theirs.get(k))
    if fields:
      disagree[process] = fields
  if disagree:
    details = '; '.join(f'process {p}: {", ".join(f[:5])}' + (' ...' if len(f) > 5 else '')
                        for p, f in disagree.items())
    raise ValueError(
        f'The {jax.process_count()} processes disagree on the config (fields '
        f'that differ from process 0: {details}). Launch every process with '
        'the same config and flags.')


def lockstep(batches: Iterable[dict],
             blank: Callable[[], dict]) -> Iterator[tuple[dict, bool]]:
  """(batch, True) for this process's batches, then (blank(), False) until
  every process has run out.

  Collective work on a global batch needs every process in every step; when
  a split is shared unevenly (one process's share a batch shorter), a process
  whose batches are done feeds blank ones, whose rows the caller marks
  invalid, until all are done. One small allgather per step, none in a
  single process.
  """
  iterator = iter(batches)
  while True:
    batch = next(iterator, None)
    if jax.process_count() > 1:
      more = multihost_utils.process_allgather(np.asarray([batch is not None]))
      if not np.asarray(more).any():
        return
    elif batch is None:
      return
    yield (blank(), False) if batch is None else (batch, True)
