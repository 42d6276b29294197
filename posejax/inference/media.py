"""Images, folders and videos in; box files and OpenCV's people detector.

What `python -m posejax.predict` reads, kept apart from the prediction itself
(posejax/predict.py). Images are RGB uint8 throughout (OpenCV's BGR is
converted on read and for the video writer).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterator

import cv2
import numpy as np

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')
VIDEO_SUFFIXES = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v')


def read_image(path: str) -> np.ndarray:
  """RGB uint8 (H, W, 3); ValueError naming the file if it does not decode."""
  image = cv2.imread(path, cv2.IMREAD_COLOR)
  if image is None:
    raise ValueError(f'{path}: not a readable image.')
  return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def kind_of(path: str) -> str:
  """'folder', 'video' or 'image' (by suffix); FileNotFoundError if absent."""
  if os.path.isdir(path):
    return 'folder'
  if not os.path.isfile(path):
    raise FileNotFoundError(f'--input: no file or folder at {path}.')
  return 'video' if path.lower().endswith(VIDEO_SUFFIXES) else 'image'


def folder_images(folder: str) -> list[str]:
  """The image files of a folder (not recursive), sorted by name."""
  names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_SUFFIXES))
  if not names:
    raise ValueError(f'--input: {folder} holds no image ({", ".join(IMAGE_SUFFIXES)}).')
  return [os.path.join(folder, n) for n in names]


class Video:
  """Frames of a video file (RGB) with its frame rate and count."""

  def __init__(self, path: str):
    self.path = path
    self._capture = cv2.VideoCapture(path)
    if not self._capture.isOpened():
      raise ValueError(f'{path}: OpenCV cannot open this video.')
    self.fps = self._capture.get(cv2.CAP_PROP_FPS) or 25.0
    self.num_frames = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None

  def frames(self) -> Iterator[np.ndarray]:
    while True:
      ok, frame = self._capture.read()
      if not ok:
        break
      yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    self._capture.release()


def video_writer(path: str, fps: float, size_hw) -> cv2.VideoWriter:
  writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'), fps,
                           (int(size_hw[1]), int(size_hw[0])))
  if not writer.isOpened():
    raise OSError(f'OpenCV cannot write the video {path}.')
  return writer


def _box(value, where: str) -> list[float]:
  try:
    box = [float(v) for v in value][:4]
  except (TypeError, ValueError):
    box = []
  if len(box) != 4 or not np.all(np.isfinite(box)) or min(box[2], box[3]) <= 0:
    raise ValueError(f'{where}: a box is [x, y, w, h] with positive w and h, '
                     f'got {value!r}.')
  return box


def read_boxes(path: str, min_score: float = 0.0) -> dict[str, np.ndarray]:
  """Boxes by image file name (or stem) from a json file.

  Two layouts are read:
    * per image: {"photo.jpg": [[x, y, w, h], ...], ...} (a fifth number, a
      score, may follow each box);
    * COCO detection results: [{"image_id" or "file_name", "bbox": [x, y, w,
      h], "score", "category_id"}, ...]; category 1 (person) with score >=
      `min_score` is kept, and `image_id` is matched against the file stem.
  Raises ValueError naming the file and the row of a malformed entry.
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f'--boxes: no file at {path}.')
  with open(path) as f:
    try:
      entries = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f'--boxes: {path} is not valid json: {e}') from None
  boxes: dict[str, list] = {}
  if isinstance(entries, dict):
    for name, rows in entries.items():
      if not isinstance(rows, list):
        raise ValueError(f'--boxes: {path}, image {name!r}: expected a list of boxes.')
      boxes[name] = [_box(r, f'--boxes: {path}, image {name!r}, box {i}')
                     for i, r in enumerate(rows)]
  elif isinstance(entries, list):
    for i, entry in enumerate(entries):
      where = f'--boxes: {path}, entry {i}'
      if not isinstance(entry, dict) or 'bbox' not in entry or not (
          'image_id' in entry or 'file_name' in entry):
        raise ValueError(f'{where}: expected {{"image_id" or "file_name", "bbox", '
                         f'"score"}}, got {entry!r}.')
      if entry.get('category_id', 1) != 1 or entry.get('score', 1.0) < min_score:
        continue
      name = str(entry.get('file_name', entry.get('image_id')))
      boxes.setdefault(name, []).append(_box(entry['bbox'], where))
  else:
    raise ValueError(f'--boxes: {path} holds neither a per-image object nor a '
                     'COCO detection list.')
  return {k: np.asarray(v, np.float32).reshape(-1, 4) for k, v in boxes.items()}


def boxes_for(boxes: dict[str, np.ndarray], file_name: str) -> np.ndarray:
  """The boxes of one image: by file name, then by stem (COCO image ids)."""
  base = os.path.basename(file_name)
  stem = os.path.splitext(base)[0]
  for key in (base, stem, stem.lstrip('0') or '0'):
    if key in boxes:
      return boxes[key]
  return np.zeros((0, 4), np.float32)


@functools.cache
def hog_detector():
  if not hasattr(cv2, 'HOGDescriptor'):
    raise ValueError(
        f'--boxes=hog needs OpenCV\'s HOG people detector, which this OpenCV '
        f'({cv2.__version__}) lacks: OpenCV 5 moved it to the contrib build. '
        'pip uninstall opencv-python opencv-python-headless, then pip install '
        "opencv-contrib-python-headless; or pass boxes as a json file or 'whole'.")
  hog = cv2.HOGDescriptor()
  hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
  return hog


def hog_people(image: np.ndarray) -> np.ndarray:
  """OpenCV's built-in HOG + linear SVM pedestrian detector (Dalal & Triggs).

  No weights to download, and no substitute for a modern detector: it finds
  upright, mostly unoccluded people at least about 128 pixels tall, misses
  sitting, lying, small or crowded people, and boxes are loose. Returns
  (N, 4) x, y, w, h boxes.
  """
  detector = hog_detector()
  if image.shape[0] < 128 or image.shape[1] < 64:
    # Smaller than the detector's 64x128 window: nothing to find (and OpenCV
    # 4.x aborts on such images).
    return np.zeros((0, 4), np.float32)
  rects, _ = detector.detectMultiScale(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY),
                                       winStride=(8, 8), padding=(8, 8), scale=1.05)
  return np.asarray(rects, np.float32).reshape(-1, 4)
