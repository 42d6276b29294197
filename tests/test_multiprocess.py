"""Two processes on loopback (4 CPU devices each) against one with 8.

The same global batches, the same loss and parameters after the same steps,
the same resumed run, and the same evaluation, through `posejax.main` and
`posejax.eval` as a user launches them (posejax/distributed.py). CPU
collectives between the processes go through gloo.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.multiprocess]
SMOKE = 'configs/synthetic.py:smoke'


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _env(devices: int) -> dict:
  env = dict(os.environ)
  env['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={devices}'
  env.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  return env


def _launch(module, args, processes: int, timeout=240):
  """Runs `python -m module args` as `processes` processes; their outputs."""
  devices = 8 // processes
  extra = [[]] if processes == 1 else [
      [f'--coordinator=localhost:{port}', f'--num_processes={processes}',
       f'--process_id={i}', '--coordinator_timeout=60']
      for port in [_free_port()] for i in range(processes)]
  procs = [subprocess.Popen([sys.executable, '-m', module, *args, *e], cwd=REPO,
                            env=_env(devices), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True) for e in extra]
  outputs = []
  try:
    for p in procs:
      out, err = p.communicate(timeout=timeout)
      outputs.append((p.returncode, out, err))
  finally:
    for p in procs:
      p.kill()
  return outputs


def _losses(stderr: str) -> dict[int, float]:
  return {int(step): float(loss) for step, loss in
          re.findall(r'\] \[(\d+)\] .*?loss=([0-9.e-]+)', stderr)}


def _train(workdir, data_dir, steps, processes):
  outputs = _launch('posejax.main', [
      f'--config={SMOKE}', f'--workdir={workdir}',
      f'--config.dataset.data_dir={data_dir}', f'--config.train.num_steps={steps}'],
      processes)
  for code, _, err in outputs:
    assert code == 0, err[-3000:]
  return _losses(outputs[0][2])


def _params(workdir, step):
  from posejax import experiment
  variables, _ = experiment.load_variables(str(workdir), step)
  return variables


def _max_difference(a, b) -> float:
  import jax
  return max(jax.tree.leaves(jax.tree.map(
      lambda x, y: float(np.abs(np.asarray(x) - np.asarray(y)).max()), a, b)))


@pytest.fixture(scope='module')
def data_dir(smoke_builder, smoke_data_dir):
  return smoke_data_dir  # records built once, before any process starts


def test_two_processes_train_resume_and_evaluate_as_one(data_dir, tmp_path):
  one, two = tmp_path / 'one', tmp_path / 'two'
  # One process, 8 devices: 6 steps (checkpoints at 3 and 6).
  losses_one = _train(one, data_dir, 6, processes=1)
  # Two processes, 4 devices each: 3 steps, then resumed to 6.
  losses_two = _train(two, data_dir, 3, processes=2)
  resumed = _train(two, data_dir, 6, processes=2)
  assert min(resumed) > 3  # started from the checkpoint of step 3
  losses_two.update(resumed)
  assert set(losses_two) >= {2, 4, 6}
  for step, loss in losses_two.items():
    assert loss == pytest.approx(losses_one[step], rel=1e-4), step
  # Gradients are summed in another order across processes: float tolerance.
  for step in (3, 6):
    assert _max_difference(_params(one, step), _params(two, step)) < 2e-4
  # Both processes end with process 0's metrics; one set of files is written.
  metrics_two = json.loads((two / 'eval' / 'step_6' / 'metrics.json').read_text())
  assert metrics_two['num_instances'] == 24

  # Evaluating one checkpoint: two processes and one give the same results.
  results = two / 'eval' / 'step_6' / 'results.json'
  runs = {}
  for processes in (2, 1):
    outputs = _launch('posejax.eval', [
        f'--config={SMOKE}', f'--workdir={two}',
        f'--config.dataset.data_dir={data_dir}'], processes)
    printed = []
    for code, out, err in outputs:
      assert code == 0, err[-3000:]
      printed.append(json.loads(out[out.index('{'):]))
    assert all(p == printed[0] for p in printed)  # every process, same metrics
    runs[processes] = printed[0], json.loads(results.read_text())
    shutil.move(results, tmp_path / f'results_{processes}.json')
  (metrics_2, results_2), (metrics_1, results_1) = runs[2], runs[1]
  assert metrics_2 == pytest.approx(metrics_1, rel=1e-6)
  assert len(results_2) == len(results_1) == 24
  assert [r['image_id'] for r in results_2] == [r['image_id'] for r in results_1]
  np.testing.assert_allclose([r['keypoints'] for r in results_2],
                             [r['keypoints'] for r in results_1], atol=1e-3)


def test_processes_that_disagree_on_the_config_stop_with_one_message(data_dir, tmp_path):
  port = _free_port()
  procs = [subprocess.Popen(
      [sys.executable, '-m', 'posejax.main', f'--config={SMOKE}',
       f'--workdir={tmp_path}', f'--config.dataset.data_dir={data_dir}',
       f'--config.optim.learning_rate={lr}', f'--coordinator=localhost:{port}',
       '--num_processes=2', f'--process_id={i}', '--coordinator_timeout=60'],
      cwd=REPO, env=_env(4), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True) for i, lr in enumerate((1e-3, 2e-3))]
  try:
    for p in procs:
      _, err = p.communicate(timeout=180)
      assert p.returncode != 0
      assert ('posejax: The 2 processes disagree on the config (fields that '
              'differ from process 0: process 1: optim.learning_rate)') in err, err[-2000:]
  finally:
    for p in procs:
      p.kill()


def test_an_unreachable_coordinator_is_one_message():
  proc = subprocess.run(
      [sys.executable, '-m', 'posejax.main', f'--config={SMOKE}', '--workdir=/nonexistent',
       f'--coordinator=localhost:{_free_port()}', '--num_processes=2',
       '--process_id=1', '--coordinator_timeout=2'],
      cwd=REPO, env=_env(4), capture_output=True, text=True, timeout=120)
  assert proc.returncode != 0
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith('posejax: The coordinator localhost:') and 'did not answer within 2 s' in last


@pytest.mark.parametrize('flags, message', [
    (['--coordinator=localhost:1234'], 'needs --num_processes and --process_id'),
    (['--num_processes=2', '--process_id=1'], 'need --coordinator=HOST:PORT'),
    (['--coordinator=localhost:1234', '--num_processes=2', '--process_id=2'],
     '--process_id=2 is not in 0..1'),
])
def test_incomplete_launch_flags_are_one_message(flags, message):
  from posejax import distributed
  values = {f.split('=')[0][2:]: f.split('=')[1] for f in flags}
  with pytest.raises(ValueError, match=re.escape(message)):
    distributed.initialize(values.get('coordinator'),
                           int(values['num_processes']) if 'num_processes' in values else None,
                           int(values['process_id']) if 'process_id' in values else None)


def test_launchers_that_start_several_tasks_are_detected(monkeypatch):
  from posejax import distributed
  for name in ('SLURM_STEP_NUM_TASKS', 'SLURM_NTASKS', 'OMPI_COMM_WORLD_SIZE',
               'TPU_WORKER_HOSTNAMES'):
    monkeypatch.delenv(name, raising=False)
  assert not distributed.launched_as_several()
  monkeypatch.setenv('SLURM_NTASKS', '1')
  assert not distributed.launched_as_several()
  monkeypatch.setenv('SLURM_NTASKS', '4')
  assert distributed.launched_as_several()
  monkeypatch.delenv('SLURM_NTASKS')
  monkeypatch.setenv('TPU_WORKER_HOSTNAMES', 'w-0,w-1')
  assert distributed.launched_as_several()
