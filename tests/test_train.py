"""The sharded train step, resumption, and posejax.main / posejax.eval end to end."""

import json
import os
import textwrap

import numpy as np
import pytest

from conftest import run_python

_SHARDED_STEP = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np, ml_collections
    from posejax import codecs, losses, models, sharding, train_step
    assert len(jax.devices()) == 8, jax.devices()
    model = models.build_model(ml_collections.ConfigDict(dict(
        name='hrnet', dtype='float32', stem_width=8, stage1_blocks=1,
        widths=(8, 16), num_modules=(1,), num_blocks=1)), 17)
    codec = codecs.HeatmapCodec((32, 24), 4, 1.5)
    optim = ml_collections.ConfigDict(dict(
        learning_rate=1e-3, warmup_steps=1, schedule='cosine', decay_steps=(),
        decay_factor=0.1, weight_decay=0.0, grad_clip_norm=1.0))
    rng = np.random.default_rng(0)
    batches = [dict(
        image=rng.integers(0, 255, (16, 32, 24, 3), dtype=np.uint8),
        keypoints=rng.uniform(0, 24, (16, 17, 2)).astype(np.float32),
        visibility=rng.integers(0, 3, (16, 17)).astype(np.int32)) for _ in range(3)]

    def run(n_devices):
      mesh = sharding.make_mesh(ml_collections.ConfigDict(dict(data=n_devices)))
      training = train_step.build_training(model, codec, losses.Loss(), mesh, optim,
                                           num_steps=10, input_size=(32, 24))
      state, step = training.state, training.step
      loss_values = []
      for b in batches:
        global_b = sharding.global_batch(b, mesh)
        assert len(global_b['image'].sharding.device_set) == n_devices
        state, metrics = step(state, global_b)
        loss_values.append(float(metrics['loss']))
      return loss_values, jax.device_get(state.variables)

    loss1, vars1 = run(1)
    loss8, vars8 = run(8)
    np.testing.assert_allclose(loss1, loss8, rtol=1e-5)
    assert loss1[-1] != loss1[0]
    for a, b in zip(jax.tree.leaves(vars1), jax.tree.leaves(vars8)):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    print('OK', loss1)
""")


@pytest.mark.slow
def test_train_step_on_8_devices_matches_1_device():
  proc = run_python('-c', _SHARDED_STEP, timeout=600,
                    env={'XLA_FLAGS': '--xla_force_host_platform_device_count=8'})
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'OK' in proc.stdout


def _config(smoke_config, data_dir, **train_overrides):
  config = smoke_config('smoke')
  config.dataset.data_dir = data_dir
  # A step schedule does not depend on num_steps, so a shorter run is a
  # faithful prefix of a longer one.
  config.optim.update(schedule='step', decay_steps=(4,))
  config.train.update(train_overrides)
  return config


@pytest.mark.slow
def test_restart_reaches_the_same_parameters(smoke_config, smoke_builder, smoke_data_dir, tmp_path):
  import jax
  from posejax import experiment
  from posejax import train

  full = _config(smoke_config, smoke_data_dir, num_steps=6, checkpoint_every_steps=3)
  train.train_and_evaluate(full, str(tmp_path / 'full'))
  # Interrupted after step 3 (its checkpoint), then restarted to step 6.
  part = _config(smoke_config, smoke_data_dir, num_steps=3, checkpoint_every_steps=3)
  train.train_and_evaluate(part, str(tmp_path / 'resumed'))
  train.train_and_evaluate(full, str(tmp_path / 'resumed'))

  v_full, step_full = experiment.load_variables(str(tmp_path / 'full'))
  v_res, step_res = experiment.load_variables(str(tmp_path / 'resumed'))
  assert step_full == step_res == 6
  v3, _ = experiment.load_variables(str(tmp_path / 'resumed'), step=3)
  moved = False
  for a, b, c in zip(jax.tree.leaves(v_full), jax.tree.leaves(v_res), jax.tree.leaves(v3)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    moved |= not np.allclose(a, c)
  assert moved, 'steps 4-6 did not change the parameters'


@pytest.mark.slow
def test_training_batches_resume_exactly(smoke_config, smoke_builder, smoke_data_dir):
  from posejax.data import pipeline
  config = _config(smoke_config, smoke_data_dir)
  # 96 figures / batch 8: step 20 lies in the second epoch.
  fresh = pipeline.train_dataset(smoke_builder, config).as_numpy_iterator()
  batches = [next(fresh) for _ in range(22)]
  resumed = pipeline.train_dataset(smoke_builder, config, start_step=20).as_numpy_iterator()
  for expected in batches[20:]:
    got = next(resumed)
    for key in expected:
      np.testing.assert_array_equal(got[key], expected[key])
  # Augmentation is random across steps (not the same crop every time).
  assert not np.array_equal(batches[0]['image'], batches[12]['image'])


def _run(module, *args, timeout=300):
  return run_python('-m', module, *args, timeout=timeout)


@pytest.mark.slow
def test_smoke_config_runs_main_and_eval(smoke_builder, smoke_data_dir, tmp_path):
  workdir = str(tmp_path / 'run')
  common = ['--config=configs/synthetic.py:smoke', f'--workdir={workdir}',
            f'--config.dataset.data_dir={smoke_data_dir}']
  proc = _run('posejax.main', *common)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert os.path.isdir(os.path.join(workdir, 'checkpoints', '6'))
  events = [f for f in os.listdir(workdir) if f.startswith('events.out.tfevents')]
  assert events
  # The final eval's pictures went to TensorBoard beside the scalars.
  written = b''.join(open(os.path.join(workdir, f), 'rb').read() for f in events)
  assert b'eval/predictions' in written and b'eval/stages' in written
  assert b'eval/AP' in written
  proc = _run('posejax.eval', *common, '--step=3')
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = os.path.join(workdir, 'eval', 'step_3')
  metrics = json.load(open(os.path.join(out, 'metrics.json')))
  assert metrics['step'] == 3 and 0.0 <= metrics['AP'] <= 1.0
  results = json.load(open(os.path.join(out, 'results.json')))
  assert len(results) == metrics['num_instances'] > 0
  assert len(results[0]['keypoints']) == 17 * 3
  assert os.path.getsize(os.path.join(out, 'predictions.png')) > 1000


@pytest.mark.parametrize('override,message', [
    ('--config.model.name=hrnett', "hrnett"),
    ('--config.dataset.name=cocoo', "cocoo"),
    ('--config.model.widht=3', 'widht'),
    ('--config.dataset.config=2017', 'manual_dir'),
])
@pytest.mark.slow
def test_bad_config_fails_before_compiling(override, message, tmp_path):
  proc = _run('posejax.main', '--config=configs/synthetic.py:smoke',
              f'--workdir={tmp_path}', f'--config.dataset.data_dir={tmp_path}/d', override,
              timeout=120)
  assert proc.returncode != 0
  assert message in proc.stderr


@pytest.mark.slow
def test_non_finite_loss_stops_training_and_keeps_good_checkpoints(
    smoke_config, smoke_builder, smoke_data_dir, tmp_path):
  from posejax import train
  config = _config(smoke_config, smoke_data_dir, num_steps=6, log_every_steps=1,
                   checkpoint_every_steps=1)
  # Adam moves every weight by ~lr per step: 1e38 overflows float32 at once.
  config.optim.update(learning_rate=1e38, warmup_steps=0)
  with pytest.raises(FloatingPointError, match='Loss is'):
    train.train_and_evaluate(config, str(tmp_path))
  # Only the finite steps were checkpointed.
  saved = os.listdir(tmp_path / 'checkpoints') if (tmp_path / 'checkpoints').exists() else []
  assert all(int(s) < 2 for s in saved if s.isdigit())


@pytest.mark.parametrize('variant, stages', [
    ('simple_baseline', {}),
    # The smoke hourglass has one stack; two check the intermediate
    # supervision.
    ('hourglass', dict(num_stacks=2)),
    ('cpm', {}),
])
@pytest.mark.slow
def test_every_network_trains_from_its_config(
    variant, stages, smoke_config, smoke_data_dir):
  import jax
  import numpy as np
  from posejax import experiment
  from posejax import sharding
  from posejax.data import pipeline
  # The variant's network and codec at its smoke width, on the smoke data.
  config = smoke_config(f'{variant},smoke')
  config.dataset.data_dir = smoke_data_dir
  config.model.update(stages)
  setup = experiment.Setup(config)  # what main.py builds, with the same checks
  training = setup.build_training()
  state, step = training.state, training.step
  initial = jax.device_get(state.params)
  batches = pipeline.train_dataset(setup.builder, config).as_numpy_iterator()
  for _ in range(2):
    state, metrics = step(state, sharding.global_batch(next(batches), setup.mesh))
  assert np.isfinite(float(metrics['loss'])) and float(metrics['loss']) > 0
  # Every parameter moved (each stage is supervised and reached by gradients).
  moved = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != b)),
                       jax.device_get(state.params), initial)
  assert all(jax.tree.leaves(moved)), moved


@pytest.mark.slow
@pytest.mark.parametrize('variant', ['udp', 'offsets', 'offsets,ohkm', 'quarter,ohkm'])
def test_every_codec_trains_and_evaluates(variant, smoke_config, smoke_data_dir, tmp_path):
  """Each codec and the hard keypoint mining, selected by a config variant,
  through training steps and the evaluation (flip test included)."""
  import numpy as np
  from posejax import experiment
  from posejax import sharding
  from posejax.data import pipeline
  from posejax.evaluation import evaluator
  config = smoke_config(f'{variant},smoke')
  config.dataset.data_dir = smoke_data_dir
  setup = experiment.Setup(config)
  assert setup.loss.ohkm_topk == (8 if 'ohkm' in variant else 0)
  training = setup.build_training()
  state, step = training.state, training.step
  batches = pipeline.train_dataset(setup.builder, config).as_numpy_iterator()
  for _ in range(2):
    state, metrics = step(state, sharding.global_batch(next(batches), setup.mesh))
  assert np.isfinite(float(metrics['loss'])) and float(metrics['loss']) > 0
  metrics = evaluator.evaluate(setup, state.variables, str(tmp_path), 2)
  assert 0 <= metrics['PCK@0.1'] <= 1
  assert (tmp_path / 'eval' / 'step_2' / 'stages.png').exists()


@pytest.mark.slow
def test_periodic_evaluations_compile_their_functions_once(
    smoke_config, smoke_data_dir, tmp_path):
  """Three evaluations and three validation losses in one run: one compile
  each of the eval prediction and of the validation loss."""
  import logging
  import jax
  from posejax import train
  config = smoke_config('smoke')
  config.dataset.data_dir = smoke_data_dir
  config.train.eval_every_steps = 2
  config.train.early_stopping.update(every_steps=2, patience=100)
  compiled = []

  class Compiles(logging.Handler):
    def emit(self, record):
      message = record.getMessage()
      if message.startswith('Compiling jit('):
        compiled.append(message[len('Compiling jit('):].split(')')[0])

  handler = Compiles()
  logging.getLogger('jax').addHandler(handler)
  jax.config.update('jax_log_compiles', True)
  try:
    train.train_and_evaluate(config, str(tmp_path))
  finally:
    jax.config.update('jax_log_compiles', False)
    logging.getLogger('jax').removeHandler(handler)
  # Evaluated at steps 2 and 4, then the kept best state; measured at 2, 4, 6.
  assert sorted(os.listdir(tmp_path / 'eval')) == ['step_2', 'step_4', 'step_6']
  assert compiled.count('predict') == 1, compiled
  assert compiled.count('loss_sum') == 1, compiled
  assert compiled.count('train_step') == 1, compiled
