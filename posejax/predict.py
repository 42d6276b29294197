"""`python -m posejax.predict --config=... --workdir=DIR --input=PATH --output=OUT`.

Keypoints for an image, a folder of images or a video, with the checkpoint
of DIR: `OUT/results.json`, the images with their skeletons in `OUT/drawn/`,
for a video `OUT/<name>_pose.mp4` and `OUT/<name>_frames.json`, and with
`--heatmaps` a panel per instance in `OUT/panels/`. Boxes: the whole image,
a json file, or OpenCV's HOG people detector (posejax/inference/media.py).
Bottom-up configs (e.g. configs/synthetic_bottom_up.py) take no boxes:
they find every person, and their panels (one per image) show each
output's heatmaps and the tags.
The library behind it is `posejax.inference.predictor.Predictor`.
"""

from __future__ import annotations

import json
import os
import time

from absl import flags
from absl import logging
import cv2
import numpy as np
import tqdm

from posejax import command
from posejax import visualize
from posejax.evaluation import postprocess
from posejax.inference import media
from posejax.inference.predictor import ImagePrediction
from posejax.inference.predictor import Predictor

# HOG's repeated windows on one person are merged at the OKS-NMS threshold of
# the official COCO evaluation.
HOG_OKS_NMS_THRESHOLD = 0.9


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
               heatmaps: bool, boxes_given: bool = False):
    self.predictor, self.output, self.heatmaps = predictor, output, heatmaps
    self.spec = predictor.spec
    self.bottom_up = predictor.codec.bottom_up
    if self.bottom_up and boxes_given:
      raise ValueError(f'--boxes={boxes}: bottom-up networks need no boxes '
                       '(they find every person in the image); drop --boxes.')
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
    if self.bottom_up:
      return self.predictor(image, heatmaps=self.heatmaps)
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
      prediction = prediction.take(postprocess.distinct_people(
          prediction.keypoints, prediction.instance_scores, area,
          self.spec.oks_sigmas, HOG_OKS_NMS_THRESHOLD))
    return prediction

  def drawn(self, image, prediction: ImagePrediction) -> np.ndarray:
    return visualize.draw_pose(image, prediction.keypoints, prediction.scores,
                               self.spec, threshold=0.2)

  def write_panels(self, prediction: ImagePrediction, stem: str) -> None:
    if self.heatmaps and self.bottom_up:
      os.makedirs(os.path.join(self.output, 'panels'), exist_ok=True)
      panel = visualize.bottom_up_panel(
          prediction.crops[0], prediction.keypoints_input, prediction.scores,
          prediction.stage_heatmaps[0], self.spec,
          tag_maps=None if prediction.tag_maps is None else prediction.tag_maps[0],
          field_maps=(None if prediction.field_maps is None
                      else prediction.field_maps[0]))
      visualize.save_png(os.path.join(self.output, 'panels', f'{stem}.png'), panel)
      return
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


def _given(values, name: str) -> bool:
  """Whether the command line set flag `name` (absl flags), else False."""
  try:
    return bool(values[name].present)
  except (KeyError, TypeError, AttributeError):
    return False


def main(values):
  kind = media.kind_of(values.input)
  paths = (media.folder_images(values.input) if kind == 'folder'
           else [values.input])
  predictor = Predictor.from_workdir(values.config, values.workdir, values.step,
                                     values.batch_size)
  run = _Run(predictor, values.boxes, values.output, values.heatmaps,
             boxes_given=_given(values, 'boxes'))
  if kind == 'video':
    report = _predict_video(run, values.input)
  else:
    report = _predict_images(run, paths, folder=kind == 'folder')
  print(json.dumps({'output': values.output, **report}, indent=2))


if __name__ == '__main__':
  command.define_run_flags(workdir='Run directory with checkpoints/.', step=True)
  flags.DEFINE_string('input', None, 'An image, a folder of images or a video.')
  flags.DEFINE_string('output', None, 'Folder for results.json, drawn images, '
                      'the annotated video and panels.')
  flags.DEFINE_string('boxes', 'whole', "'whole' (the whole image is the box), "
                      "'hog' (OpenCV's people detector; see "
                      'posejax/inference/media.py), or a json file: '
                      '{"image.jpg": [[x, y, w, h], ...]} or COCO detection '
                      'results.')
  flags.DEFINE_bool('heatmaps', False, "Also write, per instance, the crop with "
                    "its prediction beside every stage's heatmaps (panels/).")
  flags.DEFINE_integer('batch_size', 16, 'Crops per compiled batch.')
  command.run(main, required=['config', 'workdir', 'input', 'output'])
