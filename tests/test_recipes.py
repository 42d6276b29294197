"""Every recipe config builds, trains and evaluates on fixture data.

The datasets are written in their upstream formats (tests/dataset_fixtures.py)
and built by the real TFDS builders. Each recipe is checked at its real sizes
where that costs no compilation (config, Setup, input pipeline); the training
step and the evaluation run the recipe with its network narrowed and its input
shrunk, so that only tiny models compile.
"""

from __future__ import annotations

import functools
import json
import os

import jax
import numpy as np
import pytest

import dataset_fixtures
import recipe_configs
from recipe_configs import load_config


# (config file, variant) of every recipe of a real dataset: each variant,
# and all that combine together (recipe_configs.variant_args).
RECIPES = recipe_configs.recipes(synthetic=False)


@pytest.fixture(scope='module')
def fixtures(tmp_path_factory):
  """dataset name -> manual_dir, written on first use; one shared data_dir."""
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  written = {}

  def manual_dir(dataset: str) -> str:
    if dataset not in written:
      root = str(tmp_path_factory.mktemp(dataset))
      dataset_fixtures.WRITERS[dataset](root)
      written[dataset] = root
    return written[dataset]

  def on_fixtures(config):
    config.dataset.data_dir = data_dir
    config.dataset.manual_dir = manual_dir(config.dataset.name)
    return config

  return on_fixtures


def smoke(name: str, variant: str = ''):
  """The recipe's `smoke` variant: its network narrowed, its input shrunk, batch 2."""
  return load_config(name, ','.join(filter(None, (variant, 'smoke'))))


# ------------------------------------------------------------- at real size

@pytest.mark.slow
@pytest.mark.parametrize('name, variant', RECIPES)
def test_recipe_builds_its_network_and_pipeline(name, variant, fixtures):
  from posejax import experiment
  from posejax.data import pipeline
  config = fixtures(load_config(name, variant))
  setup = experiment.Setup(config)  # every check main.py makes, nothing compiled
  assert setup.codec.output_size == tuple(
      s // config.codec.stride for s in config.input.size)
  # One output channel per keypoint, three for offset voting, two with tags,
  # the COCO-18 maps and limb fields of part affinity fields.
  assert setup.model.num_keypoints == setup.codec.output_channels(setup.spec.num_keypoints)
  config.train.global_batch_size = 2
  batch = next(pipeline.train_stream(setup.builder, config, setup.codec)
               .as_numpy_iterator())
  assert batch['image'].shape == (2, *config.input.size, 3)
  people = (config.input.max_people,) if setup.codec.bottom_up else ()
  assert batch['keypoints'].shape == (2, *people, setup.spec.num_keypoints, 2)
  # The schedule's decays fall inside the run.
  assert all(0 < s < config.train.num_steps for s in config.optim.decay_steps)


def test_recipe_variants_are_the_published_settings():
  w32 = load_config('hrnet_coco')
  assert (w32.model.preset, tuple(w32.input.size), w32.codec.sigma) == ('w32', (256, 192), 2.0)
  # 210 epochs of ceil(149,813 / 128) = 1,171 steps, x0.1 at 170 and 200.
  assert w32.train.num_steps == 245_910
  assert tuple(w32.optim.decay_steps) == (199_070, 234_200)
  assert w32.eval.boxes.endswith('COCO_val2017_detections_AP_H_56_person.json')
  big = load_config('hrnet_coco', 'w48,384x288')
  assert (big.model.preset, tuple(big.input.size), big.codec.sigma) == ('w48', (384, 288), 3.0)
  assert big.train.global_batch_size == 96  # 24 per GPU x 4 in the official run
  sb = load_config('simple_baseline_coco')
  assert sb.train.num_steps == 140 * 1171 and tuple(sb.optim.decay_steps) == (90 * 1171, 120 * 1171)
  hg = load_config('hourglass_mpii')
  assert (hg.model.preset, hg.train.global_batch_size, hg.codec.sigma) == ('hg8', 16, 1.0)
  assert load_config('hrnet_wflw', '300w').dataset.eval_split == 'test_full'
  assert load_config('cpm_fashionai', 'all').dataset.config == 'all'
  champion = load_config('fashionai_champion')
  assert (champion.dataset.config, champion.model.name, champion.model.preset,
          champion.codec.name, champion.loss.ohkm_scope) == (
              'all', 'asymmetric_hourglass', 'r50_3stack', 'offsets', 'batch')
  assert load_config('fashionai_champion', '1stack').model.preset == 'r50_1stack'
  assert load_config('fashionai_champion', 'heatmap').codec.name == 'heatmap'
  with pytest.raises(ValueError, match='w64'):
    load_config('hrnet_coco', 'w64')
  # Trained here: centred heatmap grid, no flip shift. Official checkpoints:
  # their grid and their shift, with any other variant.
  assert (w32.codec.grid, w32.eval.flip_shift) == ('centred', False)
  official = load_config('hrnet_coco', 'w48,official')
  assert (official.model.preset, official.codec.grid, official.eval.flip_shift) == (
      'w48', 'official', True)
  sb_official = load_config('simple_baseline_coco', 'r101,official')
  assert (sb_official.model.preset, sb_official.codec.grid,
          sb_official.eval.flip_shift) == ('r101', 'official', True)
  assert (sb.model.preset, sb.codec.grid, sb.eval.flip_shift) == ('r50', 'centred', False)
  with pytest.raises(ValueError, match='r101'):
    load_config('simple_baseline_coco', 'r50,r101')


def test_multi_stage_recipes_supervise_each_output_as_published():
  cpn = load_config('cpn_coco')
  # The port's 15, 11, 9, 7-pixel kernels on GlobalNet, 7 on RefineNet,
  # mined on RefineNet only; Adam 5e-4 halved every 6 epochs.
  assert tuple(cpn.codec.stage_sigmas) == (2.6, 2.0, 1.7, 1.4, 1.4)
  assert (cpn.loss.ohkm_topk, tuple(cpn.loss.ohkm_stages)) == (8, (-1,))
  assert (cpn.optim.learning_rate, cpn.optim.decay_factor) == (5e-4, 0.5)
  assert tuple(cpn.optim.decay_steps) == tuple(1171 * e for e in range(6, 40, 6))
  assert load_config('cpn_coco', 'r101,384x288').codec.stage_sigmas[0] == 3.8
  mspn = load_config('mspn_coco')
  assert (mspn.model.preset, len(mspn.codec.stage_sigmas)) == ('4stg', 16)
  # Coarse to fine: the last stage one kernel finer, its finest decoded.
  assert tuple(mspn.codec.stage_sigmas[:4]) == (2.6, 2.0, 1.7, 1.4)
  assert tuple(mspn.codec.stage_sigmas[-4:]) == (2.0, 1.7, 1.4, 1.1)
  assert mspn.codec.sigma == 1.1
  assert tuple(mspn.loss.ohkm_stages) == (3, 7, 11, 15)
  assert tuple(mspn.loss.stage_weights[:4]) == (0.5, 0.5, 0.5, 2.0)
  assert (mspn.optim.schedule, mspn.train.num_steps) == ('linear', 96_000)
  one = load_config('mspn_coco', '1stg')
  assert (one.model.preset, len(one.codec.stage_sigmas)) == ('1stg', 4)


# ---------------------------------------------------------- tiny, compiled

@functools.cache
def _initialised(name: str, variant: str, on_fixtures):
  """Setup and freshly initialised state of the tiny recipe (cached)."""
  from posejax import experiment
  from posejax import train_step
  config = on_fixtures(smoke(name, variant))
  config.eval.boxes = 'ground_truth'
  setup = experiment.Setup(config)
  tx, _ = train_step.make_optimizer(config.optim, config.train.num_steps)
  # The loop's 'rbg' key, so that train_and_evaluate reuses this compiled
  # init; 'unsafe_rbg' compiles the hourglass init much faster on a CPU.
  impl = 'unsafe_rbg' if config.model.name == 'hourglass' else 'rbg'
  state = train_step.create_train_state(setup.model, tx, jax.random.key(0, impl=impl),
                                        tuple(config.input.size), setup.mesh)
  return setup, state, tx


@functools.cache
def _untrained(name: str, variant: str, on_fixtures):
  """Setup and untrained variables of the tiny recipe, for evaluation.

  Hourglass variables are filled with numpy (reference_layouts): XLA:CPU
  compiles their initialiser slowly and no training step needs them here.
  """
  import jax.numpy as jnp
  import reference_layouts
  from posejax import experiment
  config = on_fixtures(smoke(name, variant))
  if config.model.name != 'hourglass':
    setup, state, _ = _initialised(name, variant, on_fixtures)
    return setup, state.variables
  setup = experiment.Setup(config)
  abstract = jax.eval_shape(setup.model.init, jax.random.key(0),
                            jnp.zeros((1, *config.input.size, 3)))
  variables = reference_layouts.init_like_variables(
      abstract, lambda rng, shape: rng.normal(size=shape) / np.sqrt(np.prod(shape[:-1])))
  return setup, variables


# Every recipe's smoke variant compiles and takes a step, and so does the
# five-category FashionAI one, which the native-metric test initialises.
STEPPED = sorted({(name, '') for name, _ in RECIPES} | {('cpm_fashionai', 'all')})


@pytest.mark.slow
@pytest.mark.parametrize('name, variant', STEPPED)
def test_recipe_takes_a_training_step(name, variant, fixtures):
  from posejax import losses
  from posejax import sharding
  from posejax import train_step
  from posejax.data import pipeline
  setup, state, tx = _initialised(name, variant, fixtures)
  initial = jax.device_get(state.params)
  state = jax.tree.map(jax.numpy.copy, state)  # the step donates its input
  step = train_step.jit_train_step(setup.model, setup.codec, tx, setup.mesh, state,
                                   losses.loss_from_config(setup.config.loss))
  batch = next(pipeline.train_stream(setup.builder, setup.config, setup.codec)
               .as_numpy_iterator())
  state, metrics = step(state, sharding.global_batch(batch, setup.mesh))
  assert np.isfinite(float(metrics['loss'])) and float(metrics['loss']) > 0
  moved = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != b)),
                       jax.device_get(state.params), initial)
  assert all(jax.tree.leaves(moved))


def _evaluate(setup, variables, workdir, **eval_overrides):
  """evaluator.evaluate with some eval fields changed for this call only
  (and the codec built anew from them: eval.flip_shift is the codec's)."""
  from posejax import codecs
  from posejax.evaluation import evaluator
  before = {k: setup.config.eval[k] for k in eval_overrides}
  codec = setup.codec
  setup.config.eval.update(eval_overrides)
  setup.codec = codecs.codec_from_config(setup.config, setup.spec.num_keypoints)
  try:
    metrics = evaluator.evaluate(setup, variables, str(workdir), 1)
  finally:
    setup.config.eval.update(before)
    setup.codec = codec
  with open(os.path.join(workdir, 'eval', 'step_1', 'metrics.json')) as f:
    written = json.load(f)
  assert {k: written[k] for k in metrics} == metrics
  assert all(np.isfinite(v) for v in metrics.values())
  return metrics, written


class _ImageWriter:
  """Records what evaluate hands to a clu writer's write_images."""

  def __init__(self):
    self.images = {}

  def write_images(self, step, images):
    self.images.update({(step, k): np.asarray(v) for k, v in images.items()})


@pytest.mark.slow
def test_coco_recipe_evaluates_with_ground_truth_boxes(fixtures, tmp_path):
  from posejax.evaluation import evaluator
  setup, state, _ = _initialised('hrnet_coco', '', fixtures)
  writer = _ImageWriter()
  evaluator.evaluate(setup, state.variables, str(tmp_path / 'pictures'), 3, writer)
  # The prediction grid and the stage panels, as PNG and for TensorBoard.
  assert set(writer.images) == {(3, 'eval/predictions'), (3, 'eval/stages')}
  for (_, name), image in writer.images.items():
    assert image.ndim == 4 and image.shape[0] == 1 and image.shape[-1] == 3
    assert image.dtype == np.uint8 and image.std() > 0
    path = tmp_path / 'pictures' / 'eval' / 'step_3' / f'{name.split("/")[1]}.png'
    assert path.stat().st_size > 1000
  # Two crops drawn (smoke): two panel rows of crop + one stage each.
  stages = writer.images[(3, 'eval/stages')][0]
  assert stages.shape[0] > stages.shape[1] / 2
  metrics, written = _evaluate(setup, state.variables, tmp_path, flip_test=True,
                               flip_shift=True)
  assert list(metrics) == ['AP', 'AP50', 'AP75', 'APm', 'APl', 'AR', 'AR50',
                           'AR75', 'ARm', 'ARl', 'PCK@0.1']
  assert all(-1.0 <= v <= 1.0 for v in metrics.values())
  assert written['num_instances'] == 4  # the annotated val people


@pytest.mark.slow
def test_coco_recipe_evaluates_detections_with_rescoring_and_oks_nms(fixtures, tmp_path):
  from posejax.data import pipeline
  from posejax.evaluation import detections
  setup, state, _ = _initialised('hrnet_coco', '', fixtures)
  # The recipe's own detection file, relative to manual_dir.
  boxes = load_config('hrnet_coco').eval.boxes
  with_boxes = setup.config.copy_and_resolve_references()
  with_boxes.eval.update(boxes=boxes, box_score_threshold=0.3)
  found = detections.load_detections(detections.detection_file(with_boxes), 0.3)
  batches = list(pipeline.eval_dataset(setup.builder, with_boxes,
                                       detections=found).as_numpy_iterator())
  crops = {k: np.concatenate([b[k] for b in batches])
           for k in ('image_id', 'box_score', 'bbox')}
  # Image 1: three person boxes at 0.3 or more (the 0.1 box and the other
  # category are dropped), in file order; image 2: one; image 3 has none.
  assert sorted(crops['image_id'].tolist()) == [1, 1, 1, 2]
  first = crops['image_id'] == 1
  np.testing.assert_allclose(crops['box_score'][first], [0.9, 0.8, 0.7])
  np.testing.assert_allclose(crops['box_score'][~first], [0.6])
  np.testing.assert_array_equal(crops['bbox'][first][0], crops['bbox'][first][2])
  metrics, written = _evaluate(setup, state.variables, tmp_path, boxes=boxes,
                               box_score_threshold=0.3)
  # Detections are scored by pycocotools against every annotation; no box PCK.
  assert 'PCK@0.1' not in metrics and set(metrics) >= {'AP', 'AR'}
  assert all(-1.0 <= v <= 1.0 for v in metrics.values())
  # The duplicate of the first box predicts the same person: OKS-NMS (0.9)
  # keeps the higher-scored one.
  with open(os.path.join(tmp_path, 'eval', 'step_1', 'results.json')) as f:
    results = json.load(f)
  assert written['num_instances'] == len(results) == 3
  assert sorted(r['image_id'] for r in results) == [1, 1, 2]


@pytest.mark.slow
def test_official_variant_evaluates_through_the_real_path(fixtures, tmp_path):
  from posejax import experiment
  _, state, _ = _initialised('hrnet_coco', '', fixtures)  # the same network
  setup = experiment.Setup(fixtures(smoke('hrnet_coco', 'official')))
  assert (setup.codec.grid, setup.codec.refine) == ('official', 'official')
  for boxes in ('ground_truth', load_config('hrnet_coco').eval.boxes):
    metrics, written = _evaluate(setup, state.variables, tmp_path, boxes=boxes)
    assert set(metrics) >= {'AP', 'AR'} and written['num_instances'] > 0
    assert all(-1.0 <= v <= 1.0 for v in metrics.values())


def _predictions(keypoints, scores, **fields):
  """Predictions of `keypoints` (image pixels) with zeros where not given."""
  from posejax.evaluation.predictions import Predictions
  n, k = scores.shape
  rows = dict(image_id=np.arange(n), keypoints_input=keypoints,
              gt_keypoints=np.zeros((n, k, 2)), visibility=np.zeros((n, k), np.int32),
              bbox=np.zeros((n, 4)), center=np.zeros((n, 2)), scale=np.ones((n, 2)),
              box_score=np.ones(n))
  rows.update(fields)
  return Predictions(keypoints=keypoints, scores=scores, **rows)


@pytest.mark.slow
@pytest.mark.parametrize('name', ['higherhrnet_coco', 'openpose_coco'])
def test_bottom_up_recipe_trains_and_scores_without_boxes(name, fixtures, tmp_path):
  from posejax import train
  config = fixtures(smoke(name))
  metrics = train.train_and_evaluate(config, str(tmp_path))
  assert {'AP', 'AP50', 'AR'} <= set(metrics) and 'PCK@0.1' not in metrics
  out = tmp_path / 'eval' / f'step_{config.train.num_steps}'
  with open(out / 'results.json') as f:
    results = json.load(f)
  assert all(len(r['keypoints']) == 3 * 17 for r in results)
  assert (out / 'predictions.png').is_file()


@pytest.mark.slow
@pytest.mark.parametrize('name', ['cpn_coco', 'mspn_coco'])
def test_multi_stage_recipe_trains_and_scores(name, fixtures, tmp_path):
  from posejax import train
  config = fixtures(smoke(name))
  config.eval.boxes = 'ground_truth'
  metrics = train.train_and_evaluate(config, str(tmp_path))
  assert {'AP', 'AP50', 'AR', 'PCK@0.1'} <= set(metrics)
  assert all(np.isfinite(v) for v in metrics.values())
  assert (tmp_path / 'eval' / f'step_{config.train.num_steps}' / 'predictions.png').is_file()


def test_postprocess_rescores_and_merges_near_duplicates():
  from posejax import keypoints as keypoints_lib
  from posejax.evaluation import postprocess
  rng = np.random.default_rng(0)
  person = rng.uniform(0, 100, (17, 2))
  other = person + [300.0, 0.0]
  predictions = _predictions(
      np.stack([person, person + 0.5, other, person]),
      np.stack([np.full(17, 0.8), np.full(17, 0.9),
                np.where(np.arange(17) < 5, 0.1, 0.6), np.full(17, 0.5)]),
      image_id=np.array([7, 7, 7, 8]), box_score=np.array([0.9, 0.7, 1.0, 0.4]),
      scale=np.full((4, 2), 100.0), ground_truth_boxes=False,
      extras={'category': np.arange(4)})
  kept = postprocess.postprocess(predictions, keypoints_lib.COCO, 0.9)
  # Instance 1 (0.7 x 0.9 = 0.63) is a near duplicate of instance 0
  # (0.9 x 0.8 = 0.72) and is suppressed; instance 2 averages only its
  # scores above 0.2; image 8 is separate.
  assert kept.image_id.tolist() == [7, 7, 8]
  np.testing.assert_allclose(kept.instance_score, [0.72, 0.6, 0.2])
  # Every field follows the kept rows, the extras too.
  assert kept.extras['category'].tolist() == [0, 2, 3]
  np.testing.assert_array_equal(kept.keypoints[1], other)
  # With ground-truth boxes nothing is suppressed.
  assert len(postprocess.postprocess(predictions.replace(ground_truth_boxes=True),
                                     keypoints_lib.COCO, 0.9)) == 4


@pytest.mark.parametrize('name, variant, expected', [
    ('hourglass_mpii', '', {'PCKh@0.5', 'PCKh@0.5/Head', 'PCKh@0.5/Wrist',
                            'PCKh@0.5/Mean_all', 'PCKh@0.1', 'PCKh@0.1/Ankle'}),
    ('cpm_fashionai', 'all', {'NE', 'NE/dress', 'NE/skirt'}),
    ('hrnet_wflw', '', {'NME', 'FR@0.1', 'AUC@0.1', 'NME/pose', 'FR@0.1/occlusion',
                        'AUC@0.1/blur'}),
    ('hourglass_facial_keypoints', '', {'RMSE', 'RMSE/nose_tip'}),
])
@pytest.mark.slow
def test_recipe_evaluates_with_its_native_metric(name, variant, expected, fixtures,
                                                 tmp_path):
  setup, variables = _untrained(name, variant, fixtures)
  metrics, _ = _evaluate(setup, variables, tmp_path, flip_test=False)
  assert expected <= set(metrics), sorted(metrics)
  assert not {'AP', 'PCK@0.1'} & set(metrics)
  for key, value in metrics.items():
    if key.startswith(('PCKh', 'FR@')):
      assert 0.0 <= value <= 100.0, key
    elif key.startswith('AUC'):
      assert 0.0 <= value <= 1.0, key
    else:
      assert value >= 0.0, key


# -------------------------------------------- ground truth as predictions

@pytest.mark.parametrize('name, variant, perfect', [
    ('hrnet_coco', '', {'AP': 1.0, 'AP50': 1.0, 'AR': 1.0, 'PCK@0.1': 1.0}),
    ('hourglass_mpii', '', {'PCKh@0.5': 100.0, 'PCKh@0.1': 100.0,
                            'PCKh@0.5/Mean_all': 100.0, 'PCKh@0.1/Wrist': 100.0}),
    ('cpm_fashionai', 'all', {'NE': 0.0, 'NE/dress': 0.0, 'NE/skirt': 0.0}),
    ('hrnet_wflw', '', {'NME': 0.0, 'FR@0.1': 0.0, 'AUC@0.1': 1.0, 'NME/pose': 0.0}),
    ('hrnet_wflw', '300w', {'NME': 0.0, 'FR@0.1': 0.0, 'AUC@0.1': 1.0}),
    ('hourglass_facial_keypoints', '', {'RMSE': 0.0, 'RMSE/left_eye_center': 0.0}),
])
@pytest.mark.slow
def test_ground_truth_as_predictions_scores_perfectly(name, variant, perfect, fixtures):
  from posejax import experiment
  from posejax.data import pipeline
  from posejax.evaluation import evaluator
  from posejax.evaluation import postprocess
  config = fixtures(load_config(name, variant))
  config.eval.boxes = 'ground_truth'
  setup = experiment.Setup(config)
  batches = list(pipeline.eval_dataset(setup.builder, config).as_numpy_iterator())
  out = {k: np.concatenate([b[k] for b in batches]) for k in batches[0] if k != 'image'}
  assert {'head_box', 'category', 'attributes'} & set(out) == {
      'mpii_human_pose': {'head_box'}, 'fashionai_keypoints': {'category'},
      'wflw': {'attributes'}}.get(config.dataset.name, set())
  predictions = _predictions(
      out['gt_keypoints'].copy(), np.ones(out['visibility'].shape, np.float32),
      **{k: out[k] for k in ('image_id', 'gt_keypoints', 'visibility', 'bbox',
                             'center', 'scale', 'box_score')},
      extras={k: out[k] for k in setup.builder.EVAL_EXTRAS})
  kept = postprocess.postprocess(predictions, setup.spec, config.eval.oks_nms_threshold)
  metrics = evaluator.score(setup, kept)
  for key, value in perfect.items():
    assert metrics[key] == pytest.approx(value, abs=1e-6), key
  # And a wrong prediction is not perfect.
  worse = evaluator.score(setup, kept.replace(keypoints=kept.keypoints + 5.0))
  key = next(iter(perfect))
  assert worse[key] != pytest.approx(perfect[key], abs=1e-3), key


# ----------------------------------------------------------- early stopping

@pytest.mark.slow
def test_cpm_recipe_stops_early_and_scores_the_kept_state(fixtures, tmp_path,
                                                           monkeypatch):
  from posejax import experiment
  from posejax import train
  config = fixtures(smoke('cpm_fashionai'))
  config.train.update(num_steps=20, log_every_steps=1, checkpoint_every_steps=10)
  config.eval.flip_test = False  # the predict step the other tests compiled
  config.train.early_stopping.update(every_steps=2, patience=2)
  # Validation losses at steps 2, 4, 6, 8: the lowest at step 4, then two
  # measurements without a lower one stop the run at step 8.
  measured = iter([3.0, 2.0, 2.5, 2.0])
  monkeypatch.setattr(train, 'validation_loss', lambda *args: next(measured))
  workdir = str(tmp_path)
  metrics = train.train_and_evaluate(config, workdir)
  assert set(metrics) >= {'NE', 'NE/dress'}
  assert next(measured, None) is None
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['8']
  assert os.listdir(os.path.join(workdir, experiment.BEST_CHECKPOINT_DIR)) == ['4']
  assert os.path.isfile(os.path.join(workdir, 'eval', 'step_4', 'metrics.json'))
  best, step = experiment.load_variables(workdir, best=True)
  latest, _ = experiment.load_variables(workdir)
  assert step == 4
  assert any(not np.array_equal(a, b) for a, b in
             zip(jax.tree.leaves(best), jax.tree.leaves(latest)))
  # A rerun resumes at step 8, finds the patience spent and only evaluates.
  again = train.train_and_evaluate(config, workdir)
  assert again == metrics
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['8']


@pytest.mark.slow
def test_validation_loss_is_the_mean_over_instances_without_padding(fixtures):
  from posejax import sharding
  from posejax import train
  from posejax import train_step
  from posejax.data import pipeline
  setup, state, _ = _initialised('cpm_fashionai', '', fixtures)
  config = setup.config.copy_and_resolve_references()
  loss_fn = train_step.make_validation_loss_fn(setup.model, setup.codec, setup.loss)
  config.eval.batch_size = 1
  singles = list(pipeline.eval_dataset(setup.builder, config).as_numpy_iterator())
  assert len(singles) == 2  # the two held-out dress images
  # Each single padded to a batch of 2 ...
  padded = train.validation_loss(loss_fn, state.variables, singles, setup.mesh, 2)
  # ... against both in one batch, without padding.
  both = {k: np.concatenate([b[k] for b in singles]) for k in singles[0]}
  g = sharding.global_batch({k: both[k] for k in ('image', 'keypoints', 'visibility')},
                            setup.mesh)
  loss_sum, count = loss_fn(state.variables, g['image'], g['keypoints'],
                            g['visibility'], np.ones(2, bool))
  assert int(count) == 2
  whole = float(loss_sum) / 2
  assert padded == pytest.approx(whole, rel=1e-5) and whole > 0
