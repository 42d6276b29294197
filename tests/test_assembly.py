"""PAF decoding and assembly against the OpenPose port, on the same maps.

The reference is tests/reference_openpose.py, the port's `body.py`
post-processing transcribed; both sides read the same maps at the image's
resolution (several people, hidden parts, lone distractor peaks, noise).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from posejax.codecs import affinity
from posejax.codecs import assembly
import reference_openpose


def _ours(heat, paf):
  """Peaks and people (COCO-18 parts) of posejax's decoding and assembly."""
  codec = affinity.PartAffinityCodec(input_size=heat.shape[:2], num_keypoints=17,
                                     project_to_input=False, stride=1)
  candidates = jax.device_get(codec.decode(
      (jnp.asarray(heat)[None], jnp.asarray(paf)[None])))
  one = {k: v[0] for k, v in candidates.items()}
  layout = codec.layout
  return one, assembly.assemble(one, layout.limbs, layout.closing_limbs,
                                codec.min_parts, codec.min_mean_score)


def _sorted(parts):
  """(P, 18, 2) people, -1 where missing, in a canonical order."""
  flat = parts.reshape(len(parts), -1)
  return parts[np.lexsort(flat.T[::-1])]


@pytest.mark.parametrize('seed, people', [(0, 1), (1, 3), (2, 5), (3, 8), (4, 8)])
def test_the_same_peaks_and_people_as_the_port(seed, people):
  heat, paf, _, _ = reference_openpose.scene(seed, (256, 320), people)
  candidate, subset, all_peaks = reference_openpose.parse(
      heat.astype(np.float64), paf.astype(np.float64))
  peaks, found = _ours(heat, paf)
  for part, theirs in enumerate(all_peaks):  # same peaks, same order
    mine = np.flatnonzero(peaks['valid'][part])
    np.testing.assert_array_equal(peaks['x'][part, mine], [p[0] for p in theirs])
    np.testing.assert_array_equal(peaks['y'][part, mine], [p[1] for p in theirs])
    np.testing.assert_allclose(peaks['value'][part, mine], [p[2] for p in theirs],
                               rtol=1e-6)
  expected = reference_openpose.people_parts(candidate, subset)
  assert len(found) == len(expected) >= 1
  mine = np.where((found.scores != 0)[..., None], found.keypoints, -1.0)
  np.testing.assert_array_equal(_sorted(mine), _sorted(expected))


def test_maps_without_peaks_give_no_people():
  heat = np.zeros((64, 80, 19), np.float32)
  heat[..., 18] = 1.0  # all background
  peaks, found = _ours(heat, np.zeros((64, 80, 38), np.float32))
  assert not peaks['valid'].any() and len(found) == 0
  assert found.keypoints.shape == (0, 18, 2)


def test_a_lone_limb_is_no_person():
  """Fewer than 4 parts: dropped, as the port drops them."""
  heat, paf, parts, visible = reference_openpose.scene(0, (256, 320), 1)
  keep = np.zeros(19, bool)
  keep[[1, 2]] = True  # neck and right shoulder only
  heat[..., :18] *= keep[:18]
  _, found = _ours(heat, paf)
  candidate, subset, _ = reference_openpose.parse(heat.astype(np.float64),
                                                  paf.astype(np.float64))
  assert len(found) == len(subset) == 0
