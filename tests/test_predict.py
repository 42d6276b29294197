"""Prediction on your own images and videos: the Predictor API and the CLI."""

import json
import os

import cv2
import jax
import numpy as np
import pytest

from conftest import run_python


@pytest.fixture(scope='module')
def run(smoke_config, smoke_builder, smoke_data_dir, tmp_path_factory):
  """A smoke run directory with a step-0 checkpoint of random weights."""
  import reference_layouts
  from posejax import experiment
  from posejax.checkpoints import official
  config = smoke_config('smoke')
  config.dataset.data_dir = smoke_data_dir
  setup = experiment.Setup(config)
  abstract = jax.eval_shape(setup.model.init, jax.random.key(0),
                            np.zeros((1, *config.input.size, 3), np.float32))
  variables = reference_layouts.random_variables(abstract, seed=0)
  workdir = str(tmp_path_factory.mktemp('predict_run'))
  official.write_checkpoint(config, variables, workdir)
  return config, setup, variables, workdir


@pytest.mark.slow
def test_predictor_gives_the_evaluation_keypoints_for_the_same_crops(run):
  from posejax.evaluation import predict_split
  from posejax.inference import predictor as predictor_lib
  config, setup, variables, workdir = run
  predictions, crops, _ = predict_split.predict_split(setup, variables, keep_images=1000)
  assert len(crops) == len(predictions) > 8  # every crop, over several batches
  predictor = predictor_lib.Predictor.from_workdir(config, workdir, batch_size=8)
  keypoints, scores, stages = predictor.predict_crops(crops)
  np.testing.assert_allclose(keypoints, predictions.keypoints_input, atol=1e-4)
  np.testing.assert_allclose(scores, predictions.scores, atol=1e-5)
  assert stages.shape == (len(crops), 1, 16, 12, 17)  # one stage of 16x12 maps


def test_predictor_crops_whole_images_as_the_pipeline_does(run, smoke_builder):
  """The numpy crop of a box equals the tf.data crop, and maps back alike."""
  import tensorflow as tf
  import tensorflow_datasets as tfds
  from posejax.data import pipeline
  from posejax.inference import predictor as predictor_lib
  config, setup, _, workdir = run
  predictor = predictor_lib.Predictor.from_workdir(config, workdir)
  records = smoke_builder.as_dataset(split='validation', shuffle_files=False,
                                     decoders={'image': tfds.decode.SkipDecoding()})
  record = next(iter(records.as_numpy_iterator()))
  # Decoded as the pipeline decodes (JPEG decoders differ by a few levels).
  image = tf.io.decode_image(record['image'], channels=3).numpy()
  examples = next(pipeline.eval_dataset(smoke_builder, config).as_numpy_iterator())
  first = examples['image_id'] == record['image/id']
  assert first.any()
  box = examples['bbox'][first][0]
  crop, center, scale = predictor.crop(image, box)
  np.testing.assert_allclose(center, examples['center'][first][0], rtol=1e-6)
  np.testing.assert_allclose(scale, examples['scale'][first][0], rtol=1e-6)
  diff = np.abs(crop.astype(int) - examples['image'][first][0].astype(int))
  assert diff.max() <= 1, diff.max()  # bilinear rounding
  # A call with the image and its boxes: keypoints in image pixels.
  result = predictor(image, examples['bbox'][first], heatmaps=True)
  assert result.keypoints.shape == (first.sum(), 17, 2)
  assert result.crops.shape == (first.sum(), *config.input.size, 3)
  np.testing.assert_allclose(
      result.keypoints[0],
      (result.keypoints_input[0] - [(48 - 1) / 2, (64 - 1) / 2]) * scale / [48, 64]
      + center, atol=1e-3)
  # No box: the whole image is the box.
  whole = predictor(image)
  np.testing.assert_array_equal(whole.boxes, [[0, 0, image.shape[1], image.shape[0]]])
  with pytest.raises(ValueError, match='RGB uint8'):
    predictor(image.astype(np.float32))


def _cli(*args, timeout=300):
  return run_python('-m', 'posejax.predict', *args, timeout=timeout,
                    env={'POSEJAX_KEEP_MALLOC': '1'})


@pytest.mark.slow
def test_cli_on_a_folder_an_image_and_a_video(run, smoke_data_dir, tmp_path):
  config, _, _, workdir = run
  common = ['--config=configs/synthetic.py:smoke', f'--workdir={workdir}',
            f'--config.dataset.data_dir={smoke_data_dir}']
  folder = tmp_path / 'photos'
  folder.mkdir()
  rng = np.random.default_rng(0)
  for i in range(3):
    cv2.imwrite(str(folder / f'p{i}.png'), rng.integers(0, 255, (90, 70, 3), np.uint8))
  (folder / 'broken.jpg').write_bytes(b'not an image')
  boxes = tmp_path / 'boxes.json'
  boxes.write_text(json.dumps({'p0.png': [[5, 5, 40, 60], [10, 20, 30, 30, 0.9]],
                               'p2.png': []}))
  out = tmp_path / 'out'
  proc = _cli(*common, f'--input={folder}', f'--output={out}', f'--boxes={boxes}',
              '--heatmaps')
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads(proc.stdout[proc.stdout.index('{'):])
  assert (report['images'], report['skipped'], report['instances']) == (3, 1, 2)
  assert 'broken.jpg' in proc.stderr  # the skipped file is named
  results = json.load(open(out / 'results.json'))
  assert [r['file_name'] for r in results] == ['p0.png', 'p0.png']
  assert len(results[0]['keypoints']) == 17 * 3 and results[1]['bbox'] == [10, 20, 30, 30]
  assert sorted(os.listdir(out / 'drawn')) == ['p0.png', 'p1.png', 'p2.png']
  assert sorted(os.listdir(out / 'panels')) == ['p0_0.png', 'p0_1.png']
  # One image, whole-image box.
  proc = _cli(*common, f'--input={folder / "p1.png"}', f'--output={tmp_path / "one"}')
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert len(json.load(open(tmp_path / 'one' / 'results.json'))) == 1
  # A video: an annotated copy and the poses of every frame.
  video = str(tmp_path / 'clip.mp4')
  writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*'mp4v'), 10, (80, 96))
  for _ in range(12):
    writer.write(rng.integers(0, 255, (96, 80, 3), np.uint8))
  writer.release()
  proc = _cli(*common, f'--input={video}', f'--output={tmp_path / "video"}')
  assert proc.returncode == 0, proc.stderr[-3000:]
  frames = json.load(open(tmp_path / 'video' / 'clip_frames.json'))
  assert [f['frame'] for f in frames] == list(range(12))
  assert all(len(f['instances']) == 1 for f in frames)
  annotated = cv2.VideoCapture(str(tmp_path / 'video' / 'clip_pose.mp4'))
  assert int(annotated.get(cv2.CAP_PROP_FRAME_COUNT)) == 12


@pytest.mark.slow
@pytest.mark.parametrize('name, boxes, message', [
    ('empty', 'whole', 'holds no image'),  # a folder
    ('nothing.png', 'whole', 'no file or folder'),
    ('bad.mp4', 'whole', 'cannot open this video'),
    ('bad.png', 'whole', 'not a readable image'),
    ('bad.png', 'rows.json', 'rows.json, entry 1'),  # a malformed row
])
def test_cli_bad_input_is_one_message(run, smoke_data_dir, tmp_path, name, boxes,
                                      message):
  _, _, _, workdir = run
  (tmp_path / 'bad.mp4').write_bytes(b'no video')
  (tmp_path / 'bad.png').write_bytes(b'no image')
  (tmp_path / 'rows.json').write_text(json.dumps(
      [{'image_id': 1, 'bbox': [0, 0, 5, 5], 'score': 1.0}, {'bbox': [1, 2, 3, 4]}]))
  (tmp_path / 'empty').mkdir()
  target = tmp_path / name
  proc = _cli('--config=configs/synthetic.py:smoke', f'--workdir={workdir}',
              f'--config.dataset.data_dir={smoke_data_dir}', f'--input={target}',
              f'--output={tmp_path / "out"}',
              f'--boxes={tmp_path / boxes if boxes.endswith(".json") else boxes}')
  assert proc.returncode != 0
  assert 'Traceback' not in proc.stderr, proc.stderr[-2000:]
  assert 'posejax: ' in proc.stderr and message in proc.stderr, proc.stderr[-2000:]


@pytest.mark.slow
def test_cli_without_a_checkpoint_or_with_other_keypoints(run, smoke_data_dir, tmp_path):
  _, _, _, workdir = run
  image = tmp_path / 'p.png'
  cv2.imwrite(str(image), np.zeros((40, 30, 3), np.uint8))
  proc = _cli('--config=configs/synthetic.py:smoke', f'--workdir={tmp_path / "none"}',
              f'--config.dataset.data_dir={smoke_data_dir}', f'--input={image}',
              f'--output={tmp_path / "out"}')
  assert proc.returncode != 0 and 'posejax: No checkpoint' in proc.stderr
  # A network of another width (a config that is not the run's).
  proc = _cli('--config=configs/synthetic.py:smoke', f'--workdir={workdir}',
              f'--config.dataset.data_dir={smoke_data_dir}', f'--input={image}',
              f'--output={tmp_path / "out"}', '--config.model.stem_width=8')
  assert proc.returncode != 0 and 'does not fit config.model' in proc.stderr


def _drawn_person(height):
  """A dark upright figure on a light ground, proportioned like a pedestrian."""
  image = np.full((height, int(height * 0.75), 3), 200, np.uint8)
  s, c, ink = height / 400, image.shape[1] // 2, (40, 40, 40)
  cv2.ellipse(image, (c, int(90 * s)), (int(18 * s), int(22 * s)), 0, 0, 360, ink, -1)
  torso = [[c - 30 * s, 115 * s], [c + 30 * s, 115 * s], [c + 25 * s, 235 * s],
           [c - 25 * s, 235 * s]]
  cv2.fillConvexPoly(image, np.asarray(torso, np.int32), ink)
  for side in (-1, 1):
    cv2.line(image, (int(c + side * 28 * s), int(120 * s)),
             (int(c + side * 45 * s), int(230 * s)), ink, int(14 * s))
    cv2.line(image, (int(c + side * 12 * s), int(230 * s)),
             (int(c + side * 20 * s), int(340 * s)), ink, int(18 * s))
  return cv2.GaussianBlur(image, (5, 5), 0)


@pytest.mark.slow
def test_hog_finds_a_drawn_person(run, tmp_path):
  """OpenCV's detector boxes the figure, and the CLI predicts inside the box."""
  from posejax.inference import media
  image = _drawn_person(400)
  boxes = media.hog_people(image)
  assert boxes.shape == (1, 4), boxes
  x, y, w, h = boxes[0]
  # The figure spans x 90..210, y 68..345; the detector's box is looser.
  assert x < 90 and x + w > 210 and y < 68 and y + h > 345 and h < 400
  assert media.hog_people(image[:100, :60]).shape == (0, 4)  # below its window
  assert media.hog_people(np.full((300, 200, 3), 200, np.uint8)).shape == (0, 4)
  config, _, _, workdir = run
  cv2.imwrite(str(tmp_path / 'walker.png'), image[..., ::-1])
  proc = _cli('--config=configs/synthetic.py:smoke', f'--workdir={workdir}',
              f'--config.dataset.data_dir={config.dataset.data_dir}',
              f'--input={tmp_path / "walker.png"}', f'--output={tmp_path / "out"}',
              '--boxes=hog')
  assert proc.returncode == 0, proc.stderr
  results = json.loads((tmp_path / 'out' / 'results.json').read_text())
  assert len(results) == 1
  np.testing.assert_allclose(results[0]['bbox'], boxes[0], atol=1e-3)


def test_hog_boxes_keep_one_pose_per_person(run, tmp_path, monkeypatch):
  """Several HOG windows on one person leave one pose after OKS-NMS.

  Fixed windows stand in for the detector's output, so that the merge is
  tested on known overlaps.
  """
  from posejax import predict
  from posejax.inference import media
  config, _, _, workdir = run
  predictor = predict.Predictor.from_workdir(config, workdir)
  cli = predict._Run(predictor, 'hog', str(tmp_path), heatmaps=False)
  image = np.random.default_rng(0).integers(0, 255, (200, 160, 3), np.uint8)
  # The same window found at several scales of the pyramid (identical boxes
  # give identical poses, whatever the untrained network predicts).
  same = [[40, 20, 64, 128]] * 3
  monkeypatch.setattr(media, 'hog_people', lambda _: np.asarray(same, np.float32))
  prediction = cli.predict(image, 'x.png')
  assert len(prediction.boxes) == 1
  np.testing.assert_array_equal(prediction.boxes[0], same[0])
  far = same[:1] + [[100, 60, 40, 80]]
  monkeypatch.setattr(media, 'hog_people', lambda _: np.asarray(far, np.float32))
  assert len(cli.predict(image, 'x.png').boxes) == 2


def test_hog_without_the_detector_is_one_message(run, tmp_path, monkeypatch):
  """OpenCV 5 without its contrib modules has no HOG detector."""
  from posejax import predict
  from posejax.inference import media
  config, _, _, workdir = run
  monkeypatch.delattr(cv2, 'HOGDescriptor', raising=False)
  media.hog_detector.cache_clear()
  try:
    with pytest.raises(ValueError, match=r"pip install opencv-contrib-python-headless"):
      predict._Run(predict.Predictor.from_workdir(config, workdir), 'hog',
                   str(tmp_path), heatmaps=False)
  finally:
    media.hog_detector.cache_clear()
