"""Prediction without boxes: bottom-up configs in the Predictor and the CLI.

Both bottom-up families: associative embedding (configs/synthetic_bottom_up.py)
and part affinity fields (configs/synthetic_openpose.py).
"""

import functools
import json

import cv2
import jax
import numpy as np
import pytest

from conftest import run_python

RECIPES = ('synthetic_bottom_up', 'synthetic_openpose')


@pytest.fixture(scope='module', params=RECIPES)
def run(request, smoke_builder, smoke_data_dir, tmp_path_factory):
  """A bottom-up smoke run directory with a step-0 checkpoint of random weights."""
  import reference_layouts
  from posejax import experiment
  from posejax.checkpoints import official
  import recipe_configs
  config = recipe_configs.load_config(request.param, 'smoke')
  if request.param == 'synthetic_openpose':
    # Random weights give no limb that passes OpenPose's tests: with these
    # every local maximum is a part and every pair with a positive score a
    # limb, so that both paths have people to agree on.
    config.codec.update(peak_threshold=-1e9, paf_threshold=-1e9, min_parts=2,
                        min_mean_score=-1e9)
  config.dataset.data_dir = smoke_data_dir
  setup = experiment.Setup(config)
  abstract = jax.eval_shape(setup.model.init, jax.random.key(0),
                            np.zeros((1, *config.input.size, 3), np.float32))
  variables = reference_layouts.random_variables(abstract, seed=0)
  workdir = str(tmp_path_factory.mktemp('bottom_up_run'))
  official.write_checkpoint(config, variables, workdir)
  return config, setup, variables, workdir, request.param


@pytest.mark.slow
def test_predictor_finds_the_evaluation_people_on_the_same_image(run, smoke_builder):
  import tensorflow as tf
  import tensorflow_datasets as tfds
  from posejax.evaluation import predict_people
  from posejax.inference import predictor as predictor_lib
  config, setup, variables, workdir, _ = run
  config.eval.flip_test = True
  predictions, kept = predict_people.predict_people(setup, variables, keep_images=1)
  record = next(iter(smoke_builder.as_dataset(
      split='validation', shuffle_files=False,
      decoders={'image': tfds.decode.SkipDecoding()}).as_numpy_iterator()))
  image = tf.io.decode_image(record['image'], channels=3).numpy()
  predictor = predictor_lib.Predictor.from_workdir(config, workdir)
  found = predictor(image, heatmaps=True)
  rows = predictions.image_id == record['image/id']
  assert rows.sum() == len(found.keypoints) == len(kept[0][1]) > 0
  # Both warp the image to the input (TF and OpenCV bilinear differ by a
  # level here and there): the same people, to a fraction of a pixel.
  order = lambda k: np.lexsort(k.reshape(len(k), -1).T[::-1])
  np.testing.assert_allclose(
      found.keypoints[order(found.keypoints)],
      predictions.keypoints[rows][order(predictions.keypoints[rows])], atol=0.5)
  np.testing.assert_allclose(np.sort(found.instance_scores),
                             np.sort(predictions.instance_score[rows]), atol=1e-2)
  assert found.boxes.shape == (len(found.keypoints), 4)
  if hasattr(setup.codec, 'tag_maps'):  # associative embedding
    assert found.tag_maps.shape[-1] == 17 and found.stage_heatmaps.shape[1] == 2
  else:  # the last stage's 19 limb fields
    assert found.field_maps.shape[-2:] == (19, 2) and found.tag_maps is None
  with pytest.raises(ValueError, match='without boxes'):
    predictor(image, [[0, 0, 10, 10]])


def _cli(*args, timeout=300):
  return run_python('-m', 'posejax.predict', *args, timeout=timeout,
                    env={'POSEJAX_KEEP_MALLOC': '1'})


@pytest.mark.slow
def test_cli_finds_people_without_boxes_and_refuses_boxes(run, smoke_data_dir, tmp_path):
  _, _, _, workdir, name = run
  common = [f'--config=configs/{name}.py:smoke', f'--workdir={workdir}',
            f'--config.dataset.data_dir={smoke_data_dir}']
  photo = tmp_path / 'photo.png'
  cv2.imwrite(str(photo), np.random.default_rng(0).integers(0, 255, (90, 120, 3),
                                                            np.uint8))
  out = tmp_path / 'out'
  done = _cli(*common, f'--input={photo}', f'--output={out}', '--heatmaps')
  assert done.returncode == 0, done.stderr[-2000:]
  report = json.loads(done.stdout[done.stdout.index('{'):])
  results = json.loads((out / 'results.json').read_text())
  assert report['instances'] == len(results)
  assert all(r['file_name'] == 'photo.png' and len(r['keypoints']) == 51
             for r in results)
  assert (out / 'drawn' / 'photo.png').is_file()
  panel = cv2.imread(str(out / 'panels' / 'photo.png'))
  assert panel is not None and panel.shape[1] > 3 * panel.shape[0]  # 4 cells
  refused = _cli(*common, f'--input={photo}', f'--output={tmp_path / "o2"}',
                 '--boxes=hog')
  assert refused.returncode != 0
  assert refused.stderr.strip().splitlines()[-1] == (
      'posejax: --boxes=hog: bottom-up networks need no boxes (they find every '
      'person in the image); drop --boxes.')


@functools.cache
def _ceiling_module():
  """benchmarks/bottom_up_ceiling.py, imported once (it defines a flag)."""
  import importlib.util
  import os
  from conftest import REPO
  spec = importlib.util.spec_from_file_location(
      'bottom_up_ceiling', os.path.join(REPO, 'benchmarks', 'bottom_up_ceiling.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.slow
@pytest.mark.parametrize('name', RECIPES)
def test_the_evaluation_of_ideal_maps_finds_the_people(name, smoke_builder,
                                                       smoke_data_dir):
  """benchmarks/bottom_up_ceiling.py's path: the val split's annotated
  people rendered as the ideal output, decoded, grouped, mapped back to the
  images and scored; what is lost is the method's own."""
  import recipe_configs
  from posejax import experiment
  from posejax.evaluation import evaluator
  from posejax.evaluation import predict_people
  config = recipe_configs.load_config(name, 'smoke')
  config.dataset.data_dir = smoke_data_dir
  setup = experiment.Setup(config)
  predictions, _ = predict_people.predict_people(
      setup, None, _ceiling_module().ideal_predict_fn(setup))
  metrics = evaluator.score(setup, predictions)
  assert metrics['AP50'] > 0.6 and metrics['AR50'] > 0.6
