"""The house: no import cycle among posejax modules; setup errors come in order."""

import ast
import os
import subprocess
import sys

import pytest

from conftest import REPO, run_python
PACKAGE = os.path.join(REPO, 'posejax')


def _module_name(path: str) -> str:
  rel = os.path.relpath(path, REPO)[:-len('.py')].replace(os.sep, '.')
  return rel[:-len('.__init__')] if rel.endswith('.__init__') else rel


def _modules() -> dict[str, str]:
  found = {}
  for root, _, files in os.walk(PACKAGE):
    for f in files:
      if f.endswith('.py'):
        path = os.path.join(root, f)
        found[_module_name(path)] = path
  return found


def _imports(path: str, modules) -> set[str]:
  """posejax modules `path` imports, at any depth (functions included)."""
  out = set()
  for node in ast.walk(ast.parse(open(path).read())):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      # `from posejax import data` imports posejax.data; `from posejax.x import
      # Y` imports posejax.x.
      names = [f'{node.module}.{a.name}' for a in node.names] + [node.module]
    else:
      continue
    out.update(n for n in names if n in modules and n != 'posejax')
  return out


def test_no_import_cycle_among_posejax_modules():
  modules = _modules()
  graph = {m: _imports(p, modules) - {m} for m, p in modules.items()}
  # A package importing its own submodules is how packages work; a cycle is
  # any other path back to where it started.
  def edges(m):
    return {n for n in graph[m] if not n.startswith(m + '.')}
  state = {}
  stack = []

  def visit(m):
    state[m] = 'open'
    stack.append(m)
    for n in sorted(edges(m)):
      if state.get(n) == 'open':
        raise AssertionError('import cycle: ' + ' -> '.join(stack[stack.index(n):] + [n]))
      if n not in state:
        visit(n)
    stack.pop()
    state[m] = 'done'

  for m in sorted(graph):
    if m not in state:
      visit(m)
  # The walk saw the modules this layout promises.
  assert {'posejax.experiment', 'posejax.train', 'posejax.evaluation.evaluator',
          'posejax.geometry', 'posejax.train_step', 'posejax.codecs.base',
          'posejax.inference.predictor'} <= set(graph)
  # No library module imports a command line (a module whose whole job is
  # one; models/summary.py and benchmark.py are libraries with a __main__).
  commands = {'posejax.main', 'posejax.eval', 'posejax.predict',
              'posejax.import_torch', 'posejax.pretrained', 'posejax.baselines'}
  assert commands <= set(graph)
  for module, imported in graph.items():
    assert not imported & commands, (module, imported & commands)


@pytest.mark.slow
def test_every_module_imports():
  modules = sorted(m for m in _modules() if not m.endswith('__main__'))
  code = 'import importlib, sys\nfor name in sys.argv[1:]: importlib.import_module(name)'
  env = dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='3')
  proc = subprocess.run([sys.executable, '-c', code, *modules], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
def test_step_and_prediction_import_without_tensorflow():
  code = ('import sys\n'
          'import posejax.train_step, posejax.predict, posejax.geometry, '
          'posejax.benchmark, posejax.distributed, posejax.evaluation.predictions, '
          'posejax.evaluation.postprocess, posejax.inference.predictor, '
          'posejax.codecs, posejax.batches\n'
          'assert "tensorflow" not in sys.modules, "tensorflow imported"\n')
  proc = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True,
                        text=True, timeout=300, env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert proc.returncode == 0, proc.stderr[-3000:]


def _run(*args, timeout=120):
  return run_python(*args, timeout=timeout)


@pytest.mark.slow
def test_eval_without_checkpoint_says_so_before_building_data(tmp_path):
  data_dir = tmp_path / 'tfds'
  proc = _run('-m', 'posejax.eval', '--config=configs/synthetic.py:smoke',
              f'--workdir={tmp_path / "run"}', f'--config.dataset.data_dir={data_dir}')
  assert proc.returncode != 0
  assert 'posejax: No checkpoint' in proc.stderr
  assert 'Traceback' not in proc.stderr
  # Nothing was generated or built for a run that cannot be evaluated.
  assert not data_dir.exists() or not any(data_dir.iterdir())


def test_missing_dataset_and_detections_are_reported_together(tmp_path):
  from posejax import experiment
  from recipe_configs import load_config
  config = load_config('hrnet_coco')
  config.dataset.update(data_dir=str(tmp_path / 'tfds'), manual_dir='')
  with pytest.raises(experiment.SetupError) as raised:
    experiment.Setup(config)
  message = str(raised.value)
  # The dataset first, with where it goes; then the detection boxes.
  assert 'coco_keypoints/2017 is not built' in message
  assert 'cocodataset.org' in message
  assert message.index('coco_keypoints/2017') < message.index('eval.boxes')
  # A wrong config value is reported before anything on disk.
  config.model.name = 'hrnett'
  with pytest.raises(experiment.SetupError, match='hrnett'):
    experiment.Setup(config)
