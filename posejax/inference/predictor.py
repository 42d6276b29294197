"""`Predictor`: keypoints for whole images and boxes, with a trained network.

The crops are made as the evaluation makes them (posejax/geometry.py), here
with OpenCV on the host; the jitted prediction is the evaluation's
(posejax/inference/predict_fn.py), so keypoints equal `posejax.eval`'s for
the same crops. No TensorFlow.
"""

from __future__ import annotations

import dataclasses

import cv2
from flax import traverse_util
import jax
import numpy as np

from posejax import codecs
from posejax import experiment
from posejax import geometry
from posejax import models
from posejax import sharding
from posejax.codecs import grouping
from posejax.evaluation import coco
from posejax.inference import predict_fn
from posejax.models import summary


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
  # Bottom-up: (N,) the grouping's person scores; with `heatmaps=True`,
  # `crops` is the one whole-image input, `stage_heatmaps` (1, S, h, w, K)
  # and what groups them: `tag_maps` (1, h, w, K) of associative embedding
  # or `field_maps` (1, h, w, L, 2) of part affinity fields.
  person_scores: np.ndarray | None = None
  tag_maps: np.ndarray | None = None
  field_maps: np.ndarray | None = None

  @property
  def instance_scores(self) -> np.ndarray:
    """(N,) mean keypoint score above 0.2, as the COCO evaluation rescores
    (bottom-up: the grouping's person scores)."""
    if self.person_scores is not None:
      return self.person_scores
    return coco.rescore_instances(np.ones(len(self.boxes)), self.scores)

  def take(self, rows) -> ImagePrediction:
    """The instances at `rows`, every per-instance field alike."""
    whole = ('tag_maps', 'field_maps') if self.person_scores is not None else ()
    if self.person_scores is not None:
      whole += ('crops', 'stage_heatmaps')  # of the image, not per person
    return ImagePrediction(**{
        f.name: (getattr(self, f.name) if getattr(self, f.name) is None
                 or f.name in whole else getattr(self, f.name)[rows])
        for f in dataclasses.fields(self)})


class Predictor:
  """Keypoints for whole images and boxes, with a trained network.

  `predictor(image, boxes=None, heatmaps=False)` takes an RGB uint8 image of
  any size and (x, y, w, h) boxes (the whole image without), crops each box
  as the evaluation does (`geometry`: the box widened to the input's aspect
  ratio, `input.padding`, `input.crop`), predicts in batches of
  `batch_size` (padded, so each batch size compiles once), with flip test
  as the config says, and maps the keypoints back to the image.

  With a bottom-up codec (`Codec.bottom_up`) there are no boxes: the whole
  image is shown as the evaluation shows it (a square of its longer side,
  posejax/data/pipeline/whole_image.py) and every person found comes back,
  with a box around their keypoints.
  """

  def __init__(self, config, model, codec, spec, variables, batch_size: int = 16):
    self.config, self.model, self.codec, self.spec = config, model, codec, spec
    self.variables = variables
    self.batch_size = batch_size
    self.input_size = tuple(config.input.size)
    flip_index = spec.flip_index if config.eval.flip_test else None
    if codec.bottom_up:
      self._people = predict_fn.make_bottom_up_predict_fn(
          model, codec, flip_index, scales=tuple(config.eval.test_scales))
      self._maps = jax.jit(lambda v, x: model.apply(
          v, models.common.model_inputs(model, x), train=False))
    else:
      self._predict = predict_fn.make_predict_fn(model, codec, flip_index,
                                                 stage_maps='all')

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
    codec = codecs.codec_from_config(config, spec.num_keypoints)
    model = models.build_model(config.model, codec.output_channels(spec.num_keypoints))
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
                                  crop=self.config.input.crop)
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
    if self.codec.bottom_up:
      if boxes is not None:
        raise ValueError('Bottom-up networks find every person without boxes; '
                         'call the predictor without them.')
      return self._bottom_up(image, heatmaps)
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
        self.config.input.crop)
    if not heatmaps:
      return ImagePrediction(boxes, keypoints, scores)
    return ImagePrediction(boxes, keypoints, scores, crops, stages, keypoints_input)

  def _bottom_up(self, image: np.ndarray, heatmaps: bool) -> ImagePrediction:
    """Every person of the image (see the class docstring)."""
    h, w = image.shape[:2]
    center = np.asarray([(w - 1) / 2, (h - 1) / 2], np.float32)
    side = np.float32(max(h, w))
    scale = np.asarray([side, side], np.float32)
    matrix = geometry.crop_matrix(center, scale, np.float32(0.0), self.input_size)
    x = cv2.warpAffine(image, np.asarray(matrix[:2], np.float64),
                       self.input_size[::-1], flags=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    people = self._people(self.variables, x[None])[0]
    n = len(people)
    keypoints = geometry.input_to_image(
        people.keypoints, np.broadcast_to(center, (n, 2)),
        np.broadcast_to(scale, (n, 2)), self.input_size).astype(np.float32)
    prediction = ImagePrediction(
        grouping.people_boxes(keypoints, people.scores), keypoints,
        people.scores, keypoints_input=people.keypoints,
        person_scores=people.person_scores)
    if heatmaps:
      outputs = jax.device_get(self._maps(self.variables, x[None]))
      size = outputs[0].shape[1:3]
      stages = np.stack([cv2.resize(np.asarray(self.codec.maps(o))[0], size[::-1])
                         .reshape(*size, -1) for o in outputs])[None]
      cues = ({'tag_maps': np.asarray(self.codec.tag_maps(outputs[0]))}
              if hasattr(self.codec, 'tag_maps') else
              {'field_maps': np.asarray(self.codec.field_maps(outputs[-1]))})
      prediction = dataclasses.replace(
          prediction, crops=x[None], stage_heatmaps=stages, **cues)
    return prediction
