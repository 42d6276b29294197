"""Crops -> keypoints: the model, optional flip test and decoding.

Used by evaluation, by the training loop's periodic eval and by notebooks. The
jitted part takes uint8 crops and returns keypoints in input pixels; the
host part maps them back to image pixels with the inverse crop
(`posejax/geometry.py`) and returns them as `Predictions`. No TensorFlow.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
import dataclasses
import json
import os
import time

from absl import app
from absl import flags
from absl import logging
import cv2
from flax import traverse_util
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np
import tqdm

import posejax
from posejax import codecs
from posejax import config_lib
from posejax import distributed
from posejax import experiment
from posejax import geometry
from posejax import media
from posejax import models
from posejax import sharding
from posejax import visualize
from posejax.evaluation import coco
from posejax.evaluation.predictions import Predictions
from posejax.models import common
from posejax.models import summary


def make_predict_fn(model, codec, flip_index=None,
                    flip_shift: bool = False, stage_maps: str = ''):
  """(variables, uint8 images) -> (keypoints (B,K,2) input px, scores (B,K)).

  With `flip_index`, the mirrored crop is predicted too and its heatmaps,
  mirrored back with left/right swapped, are averaged with the plain ones.
  `flip_shift` moves the mirrored-back maps one pixel right first, as the
  official HRNet code's TEST.SHIFT_HEATMAP (see `codecs.shift_heatmaps_right`).
  With `stage_maps`, a third output holds every supervised stage's heatmaps
  of the plain crop: 'all' (B, S, h, w, K), or 'max' over the joints
  (B, S, h, w), K times smaller, which is what pictures of many batches need.
  """
  def predict(variables, images):
    x = common.model_inputs(model, images)
    stages = model.apply(variables, x, train=False)
    heatmaps = stages[-1].astype(jnp.float32)
    if flip_index is not None:
      of_flipped = model.apply(variables, x[:, :, ::-1, :], train=False)[-1]
      heatmaps = codec.merge_flipped(heatmaps, of_flipped.astype(jnp.float32),
                                     flip_index, flip_shift)
    keypoints, scores = codec.decode(heatmaps)
    if not stage_maps:
      return keypoints, scores
    if stage_maps not in ('all', 'max'):
      raise ValueError(f"stage_maps must be '', 'all' or 'max', got {stage_maps!r}.")
    maps = jnp.stack([codec.maps(s.astype(jnp.float32)) for s in stages], 1)
    return keypoints, scores, maps if stage_maps == 'all' else maps.max(-1)
  return jax.jit(predict)


def predict_batches(predict_fn, variables, batches: Iterable[dict], mesh,
                    batch_size: int, input_size, keep_images: int = 0,
                    ground_truth_boxes: bool = True,
                    extras: Sequence[str] = (),
                    crop: str = 'centred'):
  """Runs `predict_fn` over host batches of `pipeline.eval_dataset`.

  `batch_size` is global; this process's batches hold its share of each
  (`sharding.local_batch_size`). A short last batch is padded
  (`sharding.pad_batch`) so the jitted function compiles once, and with
  several processes every process runs the same number of steps
  (`distributed.lockstep`); padding rows are dropped again. Returns the
  `Predictions` of every instance of every process (keypoints mapped back to image pixels
  with the inverse of the `crop` the pipeline made, `geometry.input_to_image`;
  the batch fields named in `extras` go to `Predictions.extras`), the first
  `keep_images` crops of this process, and their stage maps when `predict_fn` makes them
  (`make_predict_fn(..., stage_maps=...)`; else None).
  """
  sharding.check_batch_size(batch_size, mesh, 'eval.batch_size')
  local_size = sharding.local_batch_size(batch_size)
  blank = lambda: {'image': np.zeros((1, *input_size, 3), np.uint8)}
  columns: dict[str, list] = {}
  kept, kept_maps = [], []
  for batch, real in distributed.lockstep(batches, blank):
    padded, valid = sharding.pad_batch({'image': batch['image']}, local_size)
    outputs = predict_fn(variables, sharding.global_batch(padded, mesh)['image'])
    if not real:  # this process is done; the others still need its devices
      continue
    keypoints, scores = (sharding.host_rows(x, mesh) for x in outputs[:2])
    rows = {'keypoints_input': keypoints[valid], 'scores': scores[valid]}
    rows.update({k: v for k, v in batch.items() if k != 'image'})
    for k, v in rows.items():
      columns.setdefault(k, []).append(np.asarray(v))
    if len(kept) < keep_images:
      wanted = keep_images - len(kept)
      kept.extend(batch['image'][:wanted])
      if len(outputs) > 2:
        maps = sharding.host_rows(outputs[2], mesh)
        kept_maps.extend(maps[:len(batch['image'])][:wanted])
  # Every process's instances, in process order (each read a contiguous
  # share of the split): the single-process predictions on every process.
  shares = distributed.allgather_objects(
      {k: np.concatenate(v) for k, v in columns.items()})
  shares = [share for share in shares if share]
  if not shares:
    raise ValueError(
        'No instance to predict: the eval split has no scored instance (or, '
        'with config.eval.boxes, no kept person detection on its images).')
  c = {k: np.concatenate([share[k] for share in shares]) for k in shares[0]}
  predictions = Predictions(
      image_id=c['image_id'],
      keypoints=geometry.input_to_image(c['keypoints_input'], c['center'],
                                        c['scale'], input_size, crop),
      keypoints_input=c['keypoints_input'], scores=c['scores'],
      gt_keypoints=c['gt_keypoints'], visibility=c['visibility'], bbox=c['bbox'],
      center=c['center'], scale=c['scale'], box_score=c['box_score'],
      ground_truth_boxes=ground_truth_boxes,
      extras={k: c[k] for k in extras})
  return predictions, np.asarray(kept), np.asarray(kept_maps) if kept_maps else None


@dataclasses.dataclass
class ImagePrediction:
  """The people (or faces, garments) of one image, in its pixels."""

  boxes: np.ndarray      # (N, 4) x, y, w, h: the boxes the crops were made from
  keypoints: np.ndarray  # (N, K, 2)
  scores: np.ndarray     # (N, K) heatmap peaks
  # With `heatmaps=True`: the crops (N, H, W, 3) and every stage's heatmaps
  # (N, S, h, w, K); keypoints_input (N, K, 2) are in the crops' pixels.
  crops: np.ndarray | None = None
  stage_heatmaps: np.ndarray | None = None
  keypoints_input: np.ndarray | None = None

  @property
  def instance_scores(self) -> np.ndarray:
    """(N,) mean keypoint score above 0.2, as the COCO evaluation rescores."""
    return coco.rescore_instances(np.ones(len(self.boxes)), self.scores)


class Predictor:
  """Keypoints for whole images and boxes, with a trained network.

  `predictor(image, boxes=None, heatmaps=False)` takes an RGB uint8 image of
  any size and (x, y, w, h) boxes (the whole image without), crops each box
  as the evaluation does (`geometry`: the box widened to the input's aspect
  ratio, `input.padding`, `input.crop`), predicts in batches of
  `batch_size` (padded, so each batch size compiles once), with flip test
  as the config says, and maps the keypoints back to the image.
  """

  def __init__(self, config, model, codec, spec, variables, batch_size: int = 16):
    self.config, self.model, self.codec, self.spec = config, model, codec, spec
    self.variables = variables
    self.batch_size = batch_size
    self.input_size = tuple(config.input.size)
    self._predict = make_predict_fn(
        model, codec, spec.flip_index if config.eval.flip_test else None,
        config.eval.get('flip_shift', False), stage_maps='all')

  @classmethod
  def from_workdir(cls, config, workdir: str, step: int | None = None,
                   batch_size: int = 16) -> Predictor:
    """The network of `config` with the checkpoint of `workdir` (latest step).

    Raises:
      FileNotFoundError: no such checkpoint.
      ValueError: the checkpoint does not fit the config's network (another
        keypoint count or size), naming the first differing variable.
    """
    # The keypoint layout is the dataset's, declared on its builder; TensorFlow
    # only for that look-up (nothing is read or built).
    from posejax import data  # pylint: disable=g-import-not-at-top
    spec = data.keypoint_spec(data.get_builder(config.dataset, prepare=False))
    codec = codecs.codec_from_config(config)
    model = models.build_model(config.model, spec.num_keypoints * codec.channels)
    variables, _ = experiment.load_variables(workdir, step)
    expected = traverse_util.flatten_dict(
        summary.abstract_variables(model, tuple(config.input.size)))
    loaded = traverse_util.flatten_dict(variables)
    for path, leaf in expected.items():
      got = loaded.get(path)
      if got is None or tuple(got.shape) != tuple(leaf.shape):
        raise ValueError(
            f'The checkpoint in {workdir} does not fit config.model for the '
            f'{spec.num_keypoints} keypoints of {config.dataset.name}: '
            f'{"/".join(path)} is {None if got is None else tuple(got.shape)}, '
            f'the network expects {tuple(leaf.shape)}. Use the config the '
            'run was trained with.')
    variables = jax.device_put(variables)
    return cls(config, model, codec, spec, variables, batch_size)

  def crop(self, image: np.ndarray, box) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The network input for one box: (crop, centre, scale)."""
    h, w = self.input_size
    center, scale = geometry.box_to_center_scale(
        np.asarray(box, np.float32), w / h, self.config.input.padding)
    matrix = geometry.crop_matrix(center, scale, np.float32(0.0), self.input_size,
                                  crop=self.config.input.get('crop', 'centred'))
    crop = cv2.warpAffine(image, np.asarray(matrix[:2], np.float64), (w, h),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(0, 0, 0))
    return crop, center, scale

  def predict_crops(self, crops: np.ndarray):
    """(N, H, W, 3) uint8 network inputs -> keypoints (input px), scores, stages."""
    keypoints, scores, stages = [], [], []
    for start in range(0, len(crops), self.batch_size):
      batch = crops[start:start + self.batch_size]
      padded, valid = sharding.pad_batch({'image': batch}, self.batch_size)
      out = jax.device_get(self._predict(self.variables, padded['image']))
      keypoints.append(out[0][valid])
      scores.append(out[1][valid])
      stages.append(out[2][valid])
    return np.concatenate(keypoints), np.concatenate(scores), np.concatenate(stages)

  def __call__(self, image: np.ndarray, boxes=None,
               heatmaps: bool = False) -> ImagePrediction:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
      raise ValueError(f'Predictor expects an RGB uint8 image (H, W, 3); got '
                       f'{image.dtype} {image.shape}.')
    if boxes is None:
      boxes = [[0.0, 0.0, image.shape[1], image.shape[0]]]
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    if not len(boxes):
      k = self.spec.num_keypoints
      return ImagePrediction(boxes, np.zeros((0, k, 2), np.float32),
                             np.zeros((0, k), np.float32))
    crops, centers, scales = zip(*(self.crop(image, box) for box in boxes))
    crops = np.stack(crops)
    keypoints_input, scores, stages = self.predict_crops(crops)
    keypoints = geometry.input_to_image(
        keypoints_input, np.stack(centers), np.stack(scales), self.input_size,
        self.config.input.get('crop', 'centred'))
    if not heatmaps:
      return ImagePrediction(boxes, keypoints, scores)
    return ImagePrediction(boxes, keypoints, scores, crops, stages, keypoints_input)


# ------------------------------------------------------------ command line

def _instances(prediction: ImagePrediction, file_name: str) -> list[dict]:
  """COCO-results-style entries of one image."""
  rows = []
  for box, keypoints, scores, score in zip(prediction.boxes, prediction.keypoints,
                                           prediction.scores,
                                           prediction.instance_scores):
    flat = np.concatenate([keypoints, scores[:, None]], axis=1).reshape(-1)
    rows.append({'file_name': file_name, 'bbox': [round(float(v), 2) for v in box],
                 'keypoints': [round(float(v), 3) for v in flat],
                 'score': round(float(score), 5)})
  return rows


class _Run:
  """One `python -m posejax.predict` call: boxes, prediction, outputs."""

  def __init__(self, predictor: Predictor, boxes: str, output: str,
               heatmaps: bool):
    self.predictor, self.output, self.heatmaps = predictor, output, heatmaps
    self.spec = predictor.spec
    if boxes in ('whole', 'hog'):
      self.boxes = boxes
    else:
      self.boxes = media.read_boxes(boxes)
    if boxes == 'hog':
      if self.spec.oks_sigmas is None:
        raise ValueError("--boxes=hog finds people; the network's keypoints "
                         f'({self.spec.name}) are not a person layout.')
      media.hog_detector()  # says now if this OpenCV lacks it
    os.makedirs(output, exist_ok=True)

  def predict(self, image: np.ndarray, name: str) -> ImagePrediction:
    if self.boxes == 'whole':
      boxes = None
    elif self.boxes == 'hog':
      boxes = media.hog_people(image)
    else:
      boxes = media.boxes_for(self.boxes, name)
    prediction = self.predictor(image, boxes, heatmaps=self.heatmaps)
    if self.boxes == 'hog' and len(prediction.boxes) > 1:
      # HOG fires several times on one person: keep one pose each.
      area = prediction.boxes[:, 2] * prediction.boxes[:, 3]
      keep = sorted(coco.oks_nms(
          [{'keypoints': k, 'score': s, 'area': a} for k, s, a in zip(
              prediction.keypoints, prediction.instance_scores, area)],
          self.spec.oks_sigmas, 0.9))
      prediction = ImagePrediction(*[None if v is None else v[keep] for v in (
          prediction.boxes, prediction.keypoints, prediction.scores,
          prediction.crops, prediction.stage_heatmaps, prediction.keypoints_input)])
    return prediction

  def drawn(self, image, prediction: ImagePrediction) -> np.ndarray:
    return visualize.draw_pose(image, prediction.keypoints, prediction.scores,
                               self.spec, threshold=0.2)

  def write_panels(self, prediction: ImagePrediction, stem: str) -> None:
    if not self.heatmaps or not len(prediction.boxes):
      return
    os.makedirs(os.path.join(self.output, 'panels'), exist_ok=True)
    for i, crop in enumerate(prediction.crops):
      panel = visualize.stage_panel(crop, prediction.stage_heatmaps[i].max(-1),
                                    prediction.keypoints_input[i],
                                    prediction.scores[i], self.spec)
      visualize.save_png(os.path.join(self.output, 'panels', f'{stem}_{i}.png'), panel)


def _predict_images(run: _Run, paths: list[str], folder: bool) -> dict:
  results, skipped = [], []
  os.makedirs(os.path.join(run.output, 'drawn'), exist_ok=True)
  start, first = time.perf_counter(), None
  for path in tqdm.tqdm(paths, desc='images', unit='image', disable=len(paths) < 2):
    try:
      image = media.read_image(path)
    except ValueError as e:
      if not folder:
        raise
      skipped.append(str(e))
      continue
    name = os.path.basename(path)
    prediction = run.predict(image, name)
    first = first or time.perf_counter()
    results.extend(_instances(prediction, name))
    stem = os.path.splitext(name)[0]
    visualize.save_png(os.path.join(run.output, 'drawn', f'{stem}.png'),
                       run.drawn(image, prediction))
    run.write_panels(prediction, stem)
  with open(os.path.join(run.output, 'results.json'), 'w') as f:
    json.dump(results, f)
  done = len(paths) - len(skipped)
  if skipped:
    logging.warning('Skipped %d unreadable file(s), e.g. %s', len(skipped), skipped[0])
  return {'images': done, 'skipped': len(skipped), 'instances': len(results),
          'first_image_s': (first or start) - start,
          'images_per_s': (done - 1) / max(time.perf_counter() - first, 1e-9)
                          if first and done > 1 else None}


def _predict_video(run: _Run, path: str) -> dict:
  video = media.Video(path)
  stem = os.path.splitext(os.path.basename(path))[0]
  frames_json, writer = [], None
  start, first, count = time.perf_counter(), None, 0
  for index, frame in enumerate(tqdm.tqdm(video.frames(), desc='frames', unit='frame',
                                          total=video.num_frames)):
    prediction = run.predict(frame, stem)
    first = first or time.perf_counter()
    frames_json.append({'frame': index, 'instances': _instances(prediction, stem)})
    if writer is None:
      writer = media.video_writer(os.path.join(run.output, f'{stem}_pose.mp4'),
                                  video.fps, frame.shape[:2])
    writer.write(cv2.cvtColor(run.drawn(frame, prediction), cv2.COLOR_RGB2BGR))
    run.write_panels(prediction, f'{stem}_{index:06d}')
    count += 1
  if writer is None:
    raise ValueError(f'{path}: the video has no frame OpenCV can decode.')
  writer.release()
  with open(os.path.join(run.output, f'{stem}_frames.json'), 'w') as f:
    json.dump(frames_json, f)
  return {'frames': count, 'first_frame_s': first - start,
          'frames_per_s': (count - 1) / max(time.perf_counter() - first, 1e-9)
                          if count > 1 else None}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  values = flags.FLAGS
  try:
    kind = media.kind_of(values.input)
    paths = (media.folder_images(values.input) if kind == 'folder'
             else [values.input])
    predictor = Predictor.from_workdir(values.config, values.workdir, values.step,
                                       values.batch_size)
    run = _Run(predictor, values.boxes, values.output, values.heatmaps)
    if kind == 'video':
      report = _predict_video(run, values.input)
    else:
      report = _predict_images(run, paths, folder=kind == 'folder')
  except (FileNotFoundError, ValueError) as e:
    raise SystemExit(f'posejax: {e}') from None
  print(json.dumps({'output': values.output, **report}, indent=2))


if __name__ == '__main__':
  posejax.restart_with_huge_pages()  # See its docstring: CPU step time.
  # Flags only as a program: evaluation and notebooks import this module.
  config_flags.DEFINE_config_file('config', None, 'Experiment config file.')
  flags.DEFINE_string('workdir', None, 'Run directory with checkpoints/.')
  flags.DEFINE_integer('step', None, 'Checkpoint step; default the latest.')
  flags.DEFINE_string('input', None, 'An image, a folder of images or a video.')
  flags.DEFINE_string('output', None, 'Folder for results.json, drawn images, '
                      'the annotated video and panels.')
  flags.DEFINE_string('boxes', 'whole', "'whole' (the whole image is the box), "
                      "'hog' (OpenCV's people detector; see posejax/media.py), "
                      'or a json file: {"image.jpg": [[x, y, w, h], ...]} or '
                      'COCO detection results.')
  flags.DEFINE_bool('heatmaps', False, "Also write, per instance, the crop with "
                    "its prediction beside every stage's heatmaps (panels/).")
  flags.DEFINE_integer('batch_size', 16, 'Crops per compiled batch.')
  flags.mark_flags_as_required(['config', 'workdir', 'input', 'output'])
  app.run(main, flags_parser=config_lib.parse_flags)

