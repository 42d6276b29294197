"""Drawing: skeletons on images, image grids, PNG output. numpy + cv2 only.

Images are RGB uint8 (H, W, 3) throughout; conversion to OpenCV's BGR happens
only in `save_png`. `KeypointSpec.colors()` is BGR, so it is reversed here.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import cv2
import numpy as np

from posejax.keypoints import KeypointSpec

# cv2 drawing with `shift=_SHIFT` takes integer coordinates in units of
# 1 / 2**_SHIFT pixel, which gives sub-pixel placement.
_SHIFT = 4
_ONE = 1 << _SHIFT


def _check_rgb(image: np.ndarray, what: str) -> np.ndarray:
  image = np.asarray(image)
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(
        f'{what} expects an RGB uint8 image (H, W, 3); got {image.dtype} '
        f'{image.shape}.')
  return image


def _fixed(v: float) -> int:
  # Clipped so far-off points cannot overflow cv2's int coordinates.
  return int(round(min(max(v, -1e6), 1e6) * _ONE))


def keypoint_colors_rgb(spec: KeypointSpec) -> np.ndarray:
  """(K, 3) uint8 RGB colour per keypoint (the spec's BGR colours reversed)."""
  return spec.colors()[:, ::-1].copy()


def draw_pose(image: np.ndarray,
              keypoints: np.ndarray,
              scores: np.ndarray | None,
              spec: KeypointSpec,
              threshold: float = 0.3,
              radius: float | None = None,
              thickness: int | None = None) -> np.ndarray:
  """Draws skeletons and joints on a copy of an RGB image.

  A joint is drawn when its score > threshold and its coordinates are finite;
  a limb (`spec.skeleton` edge) when both its ends are drawn. Joints take the
  spec's colour (converted to RGB); a limb takes its ends' colour when they
  agree, else their mean. Limbs are drawn first, joints on top, anti-aliased
  with sub-pixel accuracy; (0, 0) is the centre of the top-left pixel.

  Args:
    image: (H, W, 3) uint8 RGB.
    keypoints: (K, 2) or (N, K, 2) (x, y) in image pixels.
    scores: (K,) or (N, K) keypoint scores; None draws every keypoint.
    spec: keypoint layout (skeleton and colours).
    threshold: minimum score (exclusive) for a keypoint to be drawn.
    radius: joint radius in pixels; default scales with the image size.
    thickness: limb thickness in pixels; default scales with the image size.

  Returns:
    A new (H, W, 3) uint8 RGB image.
  """
  canvas = _check_rgb(image, 'draw_pose').copy()
  keypoints = np.asarray(keypoints, np.float64)
  if keypoints.ndim == 2:
    keypoints = keypoints[None]
    scores = None if scores is None else np.asarray(scores)[None]
  k = spec.num_keypoints
  if keypoints.ndim != 3 or keypoints.shape[1:] != (k, 2):
    raise ValueError(
        f'draw_pose expects keypoints (K, 2) or (N, K, 2) with K={k} for '
        f'{spec.name!r}; got {keypoints.shape}.')
  if scores is None:
    scores = np.ones(keypoints.shape[:2])
  scores = np.asarray(scores, np.float64)
  if scores.shape != keypoints.shape[:2]:
    raise ValueError(f'draw_pose: scores {scores.shape} do not match '
                     f'keypoints {keypoints.shape}.')

  size = max(canvas.shape[:2])
  if radius is None:
    radius = max(1.5, 0.006 * size)
  if thickness is None:
    thickness = max(1, int(round(0.004 * size)))
  colors = keypoint_colors_rgb(spec).astype(np.int32)

  for person, person_scores in zip(keypoints, scores):
    shown = (person_scores > threshold) & np.isfinite(person).all(axis=-1)
    for a, b in spec.skeleton:
      if not (shown[a] and shown[b]):
        continue
      color = (colors[a] + colors[b]) // 2
      cv2.line(canvas,
               (_fixed(person[a, 0]), _fixed(person[a, 1])),
               (_fixed(person[b, 0]), _fixed(person[b, 1])),
               tuple(int(c) for c in color), int(thickness),
               cv2.LINE_AA, _SHIFT)
    for j in np.flatnonzero(shown):
      cv2.circle(canvas, (_fixed(person[j, 0]), _fixed(person[j, 1])),
                 _fixed(radius), tuple(int(c) for c in colors[j]),
                 cv2.FILLED, cv2.LINE_AA, _SHIFT)
  return canvas


def image_grid(images: Sequence[np.ndarray],
               columns: int,
               pad: int = 2,
               pad_value: int = 255) -> np.ndarray:
  """Tiles RGB images row by row into one image.

  Every image is resized (bilinear) to the size of the first; grayscale
  (H, W) images are repeated to 3 channels. The grid has
  rows = ceil(n / columns') with columns' = min(columns, n), and `pad` pixels
  of `pad_value` around and between cells, so its shape is
  (rows * (h + pad) + pad, columns' * (w + pad) + pad, 3). Unused cells are
  `pad_value`.

  Args:
    images: non-empty sequence of uint8 images.
    columns: cells per row.
    pad: gap in pixels.
    pad_value: fill of gaps and empty cells.

  Returns:
    (H, W, 3) uint8 grid.
  """
  if not images:
    raise ValueError('image_grid needs at least one image.')
  if columns < 1 or pad < 0:
    raise ValueError(f'image_grid: columns must be >= 1 and pad >= 0; got '
                     f'columns={columns}, pad={pad}.')
  cells = []
  for image in images:
    image = np.asarray(image)
    if image.ndim == 2:
      image = np.repeat(image[..., None], 3, axis=-1)
    cells.append(_check_rgb(image, 'image_grid'))
  h, w = cells[0].shape[:2]
  columns = min(columns, len(cells))
  rows = math.ceil(len(cells) / columns)
  grid = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, 3),
                 pad_value, np.uint8)
  for i, cell in enumerate(cells):
    if cell.shape[:2] != (h, w):
      cell = cv2.resize(cell, (w, h), interpolation=cv2.INTER_LINEAR)
    r, c = divmod(i, columns)
    y, x = pad + r * (h + pad), pad + c * (w + pad)
    grid[y:y + h, x:x + w] = cell
  return grid


def save_png(path: str | os.PathLike[str], image_rgb: np.ndarray) -> None:
  """Writes an RGB (or grayscale) uint8 image as PNG, creating parent dirs."""
  image = np.asarray(image_rgb)
  if image.dtype != np.uint8 or image.ndim not in (2, 3):
    raise ValueError(f'save_png expects uint8 (H, W[, 3]); got {image.dtype} '
                     f'{image.shape}.')
  if image.ndim == 3:
    image = cv2.cvtColor(_check_rgb(image, 'save_png'), cv2.COLOR_RGB2BGR)
  path = os.fspath(path)
  parent = os.path.dirname(path)
  if parent:
    os.makedirs(parent, exist_ok=True)
  if not cv2.imwrite(path, image):
    raise OSError(
        f'cv2.imwrite could not write {path!r} (is the suffix .png?).')


def heatmap_overlay(image: np.ndarray, heatmap: np.ndarray,
                    alpha: float = 0.5) -> np.ndarray:
  """An (h, w) map in [0, 1], resized to the RGB image and blended on it (jet)."""
  image = _check_rgb(image, 'heatmap_overlay')
  heat = cv2.resize(np.clip(np.asarray(heatmap, np.float32), 0.0, 1.0),
                    (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
  colored = cv2.applyColorMap(np.round(heat * 255).astype(np.uint8), cv2.COLORMAP_JET)
  colored = cv2.cvtColor(colored, cv2.COLOR_BGR2RGB)
  return np.round((1 - alpha) * image + alpha * colored).astype(np.uint8)


def stage_panel(crop: np.ndarray, stage_maps: np.ndarray, keypoints: np.ndarray,
                scores: np.ndarray, spec: KeypointSpec,
                min_height: int = 192) -> np.ndarray:
  """One instance: the crop with its prediction, then every stage's heatmaps.

  `stage_maps` (S, h, w) is each supervised stage's output, maximum over the
  joints; each is shown over the crop, so that one sees what each stage of a
  multi-stage network finds and how the later stages sharpen it.
  `keypoints` (K, 2) are in the crop's pixels.
  """
  crop = _check_rgb(crop, 'stage_panel')
  factor = max(1, -(-min_height // crop.shape[0]))
  big = cv2.resize(crop, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
  cells = [draw_pose(big, (np.asarray(keypoints) + 0.5) * factor - 0.5, scores, spec,
                     threshold=0.2)]
  for s, heatmap in enumerate(stage_maps):
    cell = heatmap_overlay(big, heatmap)
    cv2.putText(cell, f'stage {s + 1}', (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                (255, 255, 255), 1, cv2.LINE_AA)
    cells.append(cell)
  return image_grid(cells, columns=len(cells))


def tag_picture(image: np.ndarray, tag_maps: np.ndarray, heatmaps: np.ndarray,
                threshold: float = 0.1) -> np.ndarray:
  """Associative-embedding tags as colours over the image.

  `tag_maps`, `heatmaps` (h, w, K): at each pixel the tag of the joint with
  the strongest heatmap, as a hue spread over the tags' range in the picture
  (one colour per person when the embedding is good), brightness the
  heatmap; pixels where no heatmap reaches `threshold` show the image
  dimmed.
  """
  image = _check_rgb(image, 'tag_picture')
  heatmaps = np.asarray(heatmaps, np.float32)
  strongest = heatmaps.argmax(-1)
  value = np.take_along_axis(heatmaps, strongest[..., None], -1)[..., 0]
  tag = np.take_along_axis(np.asarray(tag_maps, np.float32), strongest[..., None],
                           -1)[..., 0]
  shown = value >= threshold
  lo, hi = (np.percentile(tag[shown], [2, 98]) if shown.any() else (0.0, 1.0))
  hue = np.clip((tag - lo) / max(hi - lo, 1e-6), 0.0, 1.0) * 150  # OpenCV: 0-180
  hsv = np.stack([hue, np.full_like(hue, 255.0),
                  np.clip(value, 0.0, 1.0) * 255], -1).astype(np.uint8)
  colours = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
  size = (image.shape[1], image.shape[0])
  colours = cv2.resize(colours, size, interpolation=cv2.INTER_NEAREST)
  shown = cv2.resize(shown.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
  return np.where(shown[..., None], colours, (image * 0.35).astype(np.uint8))


def field_picture(image: np.ndarray, field_maps: np.ndarray,
                  threshold: float = 0.1) -> np.ndarray:
  """Part affinity fields as colours over the image.

  `field_maps` (h, w, L, 2): at each pixel the vector of the limb with the
  longest one, its direction as the hue (a colour wheel: right red, down
  green-yellow, left cyan, up blue-violet) and its length as brightness;
  pixels where no vector reaches `threshold` show the image dimmed.
  """
  image = _check_rgb(image, 'field_picture')
  fields = np.asarray(field_maps, np.float32)
  length = np.linalg.norm(fields, axis=-1)  # (h, w, L)
  strongest = length.argmax(-1)
  vector = np.take_along_axis(fields, strongest[..., None, None], 2)[:, :, 0]
  value = np.take_along_axis(length, strongest[..., None], -1)[..., 0]
  angle = np.arctan2(vector[..., 1], vector[..., 0])  # image y points down
  hue = (np.degrees(angle) % 360) / 2  # OpenCV: 0-180
  hsv = np.stack([hue, np.full_like(hue, 255.0),
                  np.clip(value, 0.0, 1.0) * 255], -1).astype(np.uint8)
  colours = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
  size = (image.shape[1], image.shape[0])
  colours = cv2.resize(colours, size, interpolation=cv2.INTER_NEAREST)
  shown = cv2.resize((value >= threshold).astype(np.uint8), size,
                     interpolation=cv2.INTER_NEAREST) > 0
  return np.where(shown[..., None], colours, (image * 0.35).astype(np.uint8))


def bottom_up_panel(image: np.ndarray, keypoints: np.ndarray, scores: np.ndarray,
                    stage_maps: np.ndarray, spec: KeypointSpec,
                    tag_maps: np.ndarray | None = None,
                    field_maps: np.ndarray | None = None,
                    min_height: int = 256) -> np.ndarray:
  """A whole image: every person found, each output's heatmaps (maximum
  over the joints) over it, and what groups them: the first output's tags
  (`tag_picture`) or the last output's part affinity fields
  (`field_picture`).

  `keypoints` (N, K, 2), `scores` (N, K) in the image's pixels; `stage_maps`
  (S, h, w, K); `tag_maps` (h, w, K); `field_maps` (h, w, L, 2).
  """
  image = _check_rgb(image, 'bottom_up_panel')
  factor = max(1, -(-min_height // image.shape[0]))
  big = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
  drawn = big
  for person, person_scores in zip(keypoints, scores):
    drawn = draw_pose(drawn, (np.asarray(person) + 0.5) * factor - 0.5,
                      person_scores, spec, threshold=0.2)
  cells = [drawn]
  for s, maps in enumerate(stage_maps):
    cell = heatmap_overlay(big, np.asarray(maps).max(-1))
    cv2.putText(cell, f'output {s + 1}', (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                (255, 255, 255), 1, cv2.LINE_AA)
    cells.append(cell)
  cues = []
  if tag_maps is not None:
    cues.append(('tags', tag_picture(big, tag_maps, np.asarray(stage_maps[0]))))
  if field_maps is not None:
    cues.append(('limb fields', field_picture(big, field_maps)))
  for name, cell in cues:
    cv2.putText(cell, name, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                (255, 255, 255), 1, cv2.LINE_AA)
    cells.append(cell)
  return image_grid(cells, columns=len(cells))
