"""Tests for the synthetic COCO person-keypoint generator."""

import json
import os

import cv2
import numpy as np
import pytest
from pycocotools import coco as coco_api
from pycocotools import mask as mask_api

from posejax import keypoints
from posejax.data import synthetic

SPEC = keypoints.COCO
NOSE = SPEC.index('nose')
EYES = [SPEC.index('left_eye'), SPEC.index('right_eye')]
EARS = [SPEC.index('left_ear'), SPEC.index('right_ear')]
SIZE = (128, 128)


def _json_path(root, split):
  return os.path.join(root, 'annotations', f'person_keypoints_{split}.json')


def _keypoints(ann):
  return np.asarray(ann['keypoints'], np.float64).reshape(-1, 3)


def _files(root):
  out = {}
  for dirpath, _, names in os.walk(root):
    for name in names:
      path = os.path.join(dirpath, name)
      with open(path, 'rb') as f:
        out[os.path.relpath(path, root)] = f.read()
  return out


@pytest.fixture(scope='module')
def big_split(tmp_path_factory):
  """A few hundred figures, enough for every case to occur."""
  root = str(tmp_path_factory.mktemp('big'))
  coco = synthetic.generate_split(root, 'val', 400, seed=3, image_size=SIZE)
  return root, coco


def test_same_arguments_give_identical_files(tmp_path):
  a, b, c = (str(tmp_path / n) for n in 'abc')
  synthetic.generate_split(a, 'train', 30, seed=1, image_size=SIZE)
  synthetic.generate_split(b, 'train', 30, seed=1, image_size=SIZE)
  synthetic.generate_split(c, 'train', 30, seed=2, image_size=SIZE)
  files_a, files_b, files_c = _files(a), _files(b), _files(c)
  assert len(files_a) > 10
  assert files_a == files_b
  annotations = os.path.join('annotations', 'person_keypoints_train.json')
  assert files_a[annotations] != files_c[annotations]
  first = os.path.join('train', '000000000001.jpg')
  assert files_a[first] != files_c[first]


def test_splits_use_different_streams(tmp_path):
  train = synthetic.generate_split(str(tmp_path), 'train', 10, 0, SIZE)
  val = synthetic.generate_split(str(tmp_path), 'val', 10, 0, SIZE)
  assert train['annotations'][0]['keypoints'] != val['annotations'][0][
      'keypoints']


def test_images_do_not_depend_on_split_length(tmp_path):
  # Each image has its own random stream, so a longer split starts with the
  # same images; only the last (capped) image of the shorter one may differ.
  short = synthetic.generate_split(str(tmp_path / 's'), 'train', 20, 0, SIZE)
  long = synthetic.generate_split(str(tmp_path / 'l'), 'train', 40, 0, SIZE)
  n = len(short['images']) - 1
  assert n >= 5
  ann = lambda coco: [a for a in coco['annotations'] if a['image_id'] <= n]
  assert ann(short) == ann(long)
  for i in range(1, n + 1):
    name = f'{i:012d}.jpg'
    with open(tmp_path / 's' / 'train' / name, 'rb') as f1, open(
        tmp_path / 'l' / 'train' / name, 'rb') as f2:
      assert f1.read() == f2.read()


@pytest.mark.parametrize('num_figures', [1, 7, 30])
def test_figure_count_is_exact(tmp_path, num_figures):
  coco = synthetic.generate_split(str(tmp_path), 'train', num_figures, 5, SIZE)
  anns = coco['annotations']
  assert len(anns) == num_figures
  assert [a['id'] for a in anns] == list(range(1, num_figures + 1))
  assert [im['id'] for im in coco['images']] == list(
      range(1, len(coco['images']) + 1))
  # Every image holds at least one annotated figure.
  assert {a['image_id'] for a in anns} == {im['id'] for im in coco['images']}
  with open(_json_path(str(tmp_path), 'train')) as f:
    assert json.load(f) == coco


def test_loads_with_pycocotools(big_split):
  root, coco = big_split
  api = coco_api.COCO(_json_path(root, 'val'))
  assert len(api.getAnnIds()) == 400
  assert len(api.getImgIds()) == len(coco['images'])
  (cat,) = api.loadCats(api.getCatIds())
  assert cat['name'] == 'person'
  assert tuple(cat['keypoints']) == SPEC.keypoint_names
  assert [tuple(e) for e in cat['skeleton']] == [
      (a + 1, b + 1) for a, b in SPEC.skeleton]
  for img in api.loadImgs(api.getImgIds()[:5]):
    pixels = cv2.imread(os.path.join(root, 'val', img['file_name']))
    assert pixels.shape == (img['height'], img['width'], 3)


def test_annotation_invariants(big_split):
  _, coco = big_split
  height, width = SIZE
  for ann in coco['annotations']:
    k = _keypoints(ann)
    v = k[:, 2]
    assert set(v.tolist()) <= {0, 1, 2}
    assert ann['num_keypoints'] == int((v > 0).sum()) >= 3
    assert ann['iscrowd'] == 0 and ann['category_id'] == 1
    np.testing.assert_array_equal(k[v == 0, :2], 0)
    xy = k[v > 0, :2]
    assert (xy >= 0).all()
    assert (xy[:, 0] <= width - 1).all() and (xy[:, 1] <= height - 1).all()
    # Drawn with cv2 at shift=4, so annotated on the 1/16 px grid.
    np.testing.assert_array_equal(xy * 16, np.round(xy * 16))
    x, y, w, h = ann['bbox']
    assert x >= 0 and y >= 0 and x + w <= width and y + h <= height
    assert w >= 8 and h >= 8
    assert 0 < ann['area'] <= w * h
    visible = k[v == 2, :2]
    assert (visible[:, 0] >= x - 1).all() and (visible[:, 0] <= x + w).all()
    assert (visible[:, 1] >= y - 1).all() and (visible[:, 1] <= y + h).all()


def test_all_cases_occur(big_split):
  _, coco = big_split
  k = np.stack([_keypoints(a) for a in coco['annotations']])
  v = k[..., 2]
  front = (v[:, [NOSE] + EYES] > 0).any(1)
  back = (v[:, [NOSE] + EYES] == 0).all(1) & (v[:, EARS] > 0).any(1)
  assert 0.3 < front.mean() < 0.7
  assert 0.3 < back.mean() < 0.7
  assert 0.01 < (v == 1).mean() < 0.3
  assert 0.01 < (v[:, 5:] == 0).mean() < 0.4  # body joints out of the frame
  assert (v == 2).mean() > 0.6
  heights = np.array([a['bbox'][3] for a in coco['annotations']]) / SIZE[0]
  assert heights.min() < 0.3 and heights.max() > 0.7


def _side_sign(kps, left, right):
  """Sign of (left - right) along the figure's own rightward axis."""
  sh = [SPEC.index('left_shoulder'), SPEC.index('right_shoulder')]
  hp = [SPEC.index('left_hip'), SPEC.index('right_hip')]
  up = kps[sh].mean(0) - kps[hp].mean(0)
  rightward = np.array([-up[1], up[0]])  # (0, -1) upright -> (1, 0)
  return np.sign((kps[left] - kps[right]) @ rightward)


def test_left_right_follow_facing(big_split):
  # Front-facing figures show their left on the image right (of the figure),
  # back-facing ones on the image left, as people in photos do.
  _, coco = big_split
  checked = {True: 0, False: 0}
  for ann in coco['annotations']:
    k = _keypoints(ann)
    if (k[5:13, 2] == 0).any():  # needs both shoulders and hips
      continue
    is_back = bool((k[[NOSE] + EYES, 2] == 0).all() and (k[EARS, 2] > 0).all())
    is_front = bool((k[EYES, 2] > 0).all())
    if not (is_back or is_front):
      continue
    expected = -1 if is_back else 1
    # Joints placed symmetrically about the body axis (limbs go anywhere).
    for name in ('shoulder', 'hip', 'ear'):
      pair = SPEC.index(f'left_{name}'), SPEC.index(f'right_{name}')
      assert _side_sign(k[:, :2], *pair) == expected, (ann['id'], name)
    if is_front:
      assert _side_sign(k[:, :2], *EYES) == 1, ann['id']
    checked[is_back] += 1
  assert checked[True] > 20 and checked[False] > 20


def test_keypoints_lie_on_their_figure():
  # Visible keypoints lie on the uncovered part of their own figure; occluded
  # ones on the figure, under its occluder or a later figure. Box and area are
  # pycocotools' own for the silhouette, and the image shows the figure where
  # its mask says.
  inside, outside = [], []
  causes = {'occluder': 0, 'figure': 0}
  num_figures = num_occluders = 0
  for index in range(40):
    rng = synthetic.image_rng(7, 'test', index)
    out = synthetic._render_image(rng, SIZE, 3, with_masks=True)
    figs = out['figures']
    change = np.abs(out['image'].astype(np.int32) -
                    out['background'].astype(np.int32)).max(-1)
    drawn = np.zeros(SIZE, bool)
    for i, fig in enumerate(figs):
      sil = fig['silhouette']
      later_figs = np.zeros(SIZE, bool)
      later_occluders = fig['occluder'].copy()
      for other in figs[i + 1:]:
        later_figs |= other['silhouette']
        later_occluders |= other['occluder']
      covered = later_figs | later_occluders
      for other in figs[i + 1:]:  # figures overlap only a little
        overlap = np.count_nonzero(sil & other['silhouette'])
        assert overlap <= 0.25 * min(fig['area'], other['area'])
      np.testing.assert_array_equal(fig['visible'], sil & ~covered)
      drawn |= sil | fig['occluder']
      num_figures += 1
      num_occluders += fig['occluder'].any()
      for (x, y), v in zip(fig['keypoints'], fig['visibility']):
        if v == 0:
          continue
        row, col = int(np.floor(y + 0.5)), int(np.floor(x + 0.5))
        assert sil[row, col], (index, x, y)
        assert covered[row, col] == (v == 1), (index, x, y, v)
        if v == 1:
          causes['occluder'] += later_occluders[row, col]
          causes['figure'] += later_figs[row, col]
      rle = mask_api.encode(np.asfortranarray(sil.astype(np.uint8)))
      np.testing.assert_allclose(mask_api.toBbox(rle), fig['bbox'])
      assert mask_api.area(rle) == fig['area']
      core = cv2.erode(fig['visible'].astype(np.uint8),
                       np.ones((5, 5), np.uint8)) > 0
      inside.append(change[core])
    background = cv2.dilate(drawn.astype(np.uint8), np.ones((7, 7),
                                                            np.uint8)) == 0
    outside.append(change[background])
  assert causes['occluder'] > 0 and causes['figure'] > 0
  assert 0.1 < num_occluders / num_figures < 0.5  # p = 0.3 per figure
  # Sensor noise only (sd <= 6) away from figures and occluders; figures
  # replace the background where their masks say.
  assert np.mean(np.concatenate(outside)) < 8
  assert np.mean(np.concatenate(inside) > 25) > 0.6


def test_points_are_drawn_where_annotated():
  # cv2 puts pixel centres on integers, as our keypoints do: a disc drawn at a
  # keypoint has its centroid there, to well under a pixel.
  rng = np.random.default_rng(0)
  for _ in range(5):
    figure = synthetic._sample_figure(rng)
    scale = rng.uniform(100, 300)
    rotation = np.exp(1j * rng.uniform(-1.5, 1.5))
    centre = complex(*rng.uniform(250, 260, 2))
    expected = synthetic._to_image(figure['keypoints'], scale, rotation, centre)
    for local, target in zip(figure['keypoints'], expected):
      disc = [('circle', (local,), 4 / scale, (255, 255, 255), True)]
      mask = np.zeros((512, 512), np.uint8)
      synthetic._draw_prims(mask, disc, (0, 0), scale, rotation, centre)
      rows, cols = np.nonzero(mask)
      weights = mask[rows, cols].astype(np.float64)
      assert abs(np.average(cols, weights=weights) - target.real) < 0.1
      assert abs(np.average(rows, weights=weights) - target.imag) < 0.1
      # The same point, drawn through an offset canvas as masks are.
      crop = np.zeros((64, 64), np.uint8)
      origin = (int(target.real) - 32, int(target.imag) - 32)
      synthetic._draw_prims(crop, disc, origin, scale, rotation, centre)
      np.testing.assert_array_equal(
          crop, mask[origin[1]:origin[1] + 64, origin[0]:origin[0] + 64])


def test_ensure_generates_once_and_regenerates_on_change(tmp_path):
  root = str(tmp_path / 'synthetic')
  args = dict(num_train=12, num_val=6, seed=0, image_size=(64, 64))
  assert synthetic.ensure_synthetic_coco(root, **args) == root
  marker = os.path.join(root, 'GENERATED.json')
  image = os.path.join(root, 'train', '000000000001.jpg')
  stamps = os.stat(marker).st_mtime_ns, os.stat(image).st_mtime_ns
  with open(_json_path(root, 'val')) as f:
    assert len(json.load(f)['annotations']) == 6

  synthetic.ensure_synthetic_coco(root, **args)
  assert (os.stat(marker).st_mtime_ns, os.stat(image).st_mtime_ns) == stamps

  synthetic.ensure_synthetic_coco(root, **dict(args, num_val=9))
  with open(_json_path(root, 'val')) as f:
    assert len(json.load(f)['annotations']) == 9
  with open(marker) as f:
    assert json.load(f)['num_val'] == 9
  # Only the dataset is left next to it: no temporary or old copies.
  assert os.listdir(tmp_path) == ['synthetic']


def test_ensure_is_atomic(tmp_path, monkeypatch):
  root = str(tmp_path / 'synthetic')
  args = dict(num_train=8, num_val=4, seed=0, image_size=(64, 64))
  synthetic.ensure_synthetic_coco(root, **args)
  before = _files(root)
  real = synthetic.generate_split

  def dies_on_val(root_, split, *a, **k):
    if split == 'val':
      raise KeyboardInterrupt  # as if killed half way
    return real(root_, split, *a, **k)

  monkeypatch.setattr(synthetic, 'generate_split', dies_on_val)
  with pytest.raises(KeyboardInterrupt):
    synthetic.ensure_synthetic_coco(root, **dict(args, seed=1))
  assert _files(root) == before  # the complete old generation is untouched
  assert os.listdir(tmp_path) == ['synthetic']


def test_ensure_refuses_to_delete_other_data(tmp_path):
  root = tmp_path / 'coco'
  root.mkdir()
  (root / 'precious.txt').write_text('real data')
  with pytest.raises(FileExistsError, match='GENERATED.json'):
    synthetic.ensure_synthetic_coco(str(root), num_train=4, num_val=2,
                                    image_size=(64, 64))
  assert (root / 'precious.txt').read_text() == 'real data'


def test_non_square_images(tmp_path):
  coco = synthetic.generate_split(str(tmp_path), 'val', 12, 0, (96, 160))
  for img in coco['images']:
    assert (img['height'], img['width']) == (96, 160)
    pixels = cv2.imread(os.path.join(tmp_path, 'val', img['file_name']))
    assert pixels.shape == (96, 160, 3)
  for ann in coco['annotations']:
    k = _keypoints(ann)
    assert (k[k[:, 2] > 0, 0] <= 159).all() and (k[k[:, 2] > 0, 1] <= 95).all()
    x, y, w, h = ann['bbox']
    assert x + w <= 160 and y + h <= 96
