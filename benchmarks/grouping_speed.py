r"""Bottom-up decoding and grouping: posejax against the official Python code.

  python benchmarks/grouping_speed.py [--size=512 --people=6 --images=20 --flip]
  python benchmarks/grouping_speed.py --codec=part_affinity [--size=368 --people=6]

Associative embedding (the default). Both sides take the same maps of one
image, (K, H, W) heatmaps and tags at
the decoding resolution (HigherHRNet decodes at the input's, 512x512 for
COCO), rendered as people with one tag each on noise
(tests/reference_grouping.py's `scene`), and return the people:

  posejax    `AssociativeEmbeddingCodec.decode` (NMS, top 30, tags and
             neighbours; jitted), `grouping.group` (numpy + scipy's
             assignment), `AssociativeEmbeddingCodec.refine` (jitted),
             `grouping.fill_missing`
  reference  tests/reference_grouping.py, the official group.py transcribed
             (torch NMS and top-k, Python matching, per-person numpy
             refinement), with scipy's assignment in place of the `munkres`
             package, which would be slower still

Part affinity fields (`--codec=part_affinity`): both sides take the same
confidence maps and PAFs of one image at its resolution (OpenPose's port
resizes its outputs to the image before decoding), rendered as CMU targets
of people with hidden parts, lone peaks and noise
(tests/reference_openpose.py's `scene`):

  posejax    `PartAffinityCodec.decode` (smoothing, peaks, the line integral
             of every candidate limb; jitted) and `assembly.assemble`
  reference  tests/reference_openpose.py, the port's body.py transcribed
             (scipy's gaussian_filter, numpy peaks, a Python loop over the
             pairs of each limb, the assembly)

Each image is timed end to end, from the maps where each side's network
leaves them (posejax's on the device, the reference's in host memory, as
its parser takes them) to people in host memory, after one untimed warm-up
per side; the two sides alternate image by image. The people found must be equal;
the last line is the result as JSON. Needs torch (the `torch` extra).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, 'tests'))

from posejax import codecs  # noqa: E402
from posejax.codecs import grouping  # noqa: E402
from posejax.codecs import assembly  # noqa: E402
from posejax.inference import predict_fn  # noqa: E402
import reference_grouping  # noqa: E402
import reference_openpose  # noqa: E402
from reference_grouping import scene  # noqa: E402


def posejax_people(codec, decode, refine, combined, tag):
  candidates = {k: v[0] for k, v in jax.device_get(decode(combined)).items()}
  people = grouping.group(candidates, codec.order(), codec.detection_threshold,
                          codec.tag_threshold, codec.max_people, codec.adjust)
  pairs = grouping.missing_joints(people)
  if len(pairs):
    bucket = predict_fn.padded_size  # as the predict function pads
    means = np.zeros((1, bucket(len(people)), tag.shape[-1]), np.float32)
    means[0, :len(people)] = people.mean_tags
    padded = np.zeros((bucket(len(pairs)), 2), np.int32)
    padded[:len(pairs)] = pairs
    refined = jax.device_get(refine(combined, jnp.asarray(means),
                                    jnp.asarray(padded[None, :, 0]),
                                    jnp.asarray(padded[None, :, 1])))
    people = grouping.fill_missing(
        people, pairs, {k: v[0, :len(pairs)] for k, v in refined.items()})
  return people


def affinity_people(codec, decode, heat, paf):
  candidates = {k: v[0] for k, v in jax.device_get(decode((heat, paf))).items()}
  layout = codec.layout
  return assembly.assemble(candidates, layout.limbs, layout.closing_limbs,
                           codec.min_parts, codec.min_mean_score)


def affinity_main(args):
  size = (args.size, args.size)
  codec = codecs.PartAffinityCodec(input_size=size, num_keypoints=17, stride=1,
                                   project_to_input=False)
  decode = jax.jit(codec.decode)
  ours, theirs, people_counts = [], [], []
  for i in range(args.images + 1):
    heat, paf, _, _ = reference_openpose.scene(i, size, args.people)
    maps = jax.block_until_ready((jnp.asarray(heat)[None], jnp.asarray(paf)[None]))
    heat64, paf64 = heat.astype(np.float64), paf.astype(np.float64)
    start = time.perf_counter()
    found = affinity_people(codec, decode, *maps)
    middle = time.perf_counter()
    candidate, subset, _ = reference_openpose.parse(heat64, paf64)
    end = time.perf_counter()
    expected = reference_openpose.people_parts(candidate, subset)
    mine = np.where((found.scores != 0)[..., None], found.keypoints, -1.0)
    canonical = lambda p: p[np.lexsort(p.reshape(len(p), -1).T[::-1])]
    if len(mine) != len(expected) or not np.array_equal(canonical(mine),
                                                        canonical(expected)):
      raise SystemExit(f'image {i}: posejax and the reference found different people.')
    if i:
      ours.append(middle - start)
      theirs.append(end - middle)
      people_counts.append(len(found))
  return ours, theirs, people_counts


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--codec', default='associative_embedding',
                      choices=('associative_embedding', 'part_affinity'))
  parser.add_argument('--size', type=int, default=None,
                      help='map side (512 for associative embedding, 368 for PAFs)')
  parser.add_argument('--people', type=int, default=6)
  parser.add_argument('--images', type=int, default=20)
  parser.add_argument('--flip', action='store_true',
                      help='two tag dimensions, as with flip test')
  args = parser.parse_args()
  if args.size is None:
    args.size = 368 if args.codec == 'part_affinity' else 512
  if args.codec == 'part_affinity':
    report(args, *affinity_main(args))
    return
  size = (args.size, args.size)
  codec = codecs.AssociativeEmbeddingCodec(
      input_size=size, num_keypoints=17, stride=1, project_to_input=False)
  decode, refine = jax.jit(codec.decode), jax.jit(codec.refine)
  parser_ref = reference_grouping.HeatmapParser()

  ours, theirs, people_counts = [], [], []
  for i in range(args.images + 1):
    det, tag = scene(i, size=size, people=args.people)
    if args.flip:
      tag = np.concatenate([tag, tag + np.float32(0.1)], -1)
    # Each side's maps as its network leaves them: posejax's on the device
    # in (1, H, W, K), the reference's in host memory as (K, H, W).
    combined = jax.block_until_ready(
        (jnp.asarray(det.transpose(1, 2, 0))[None],
         jnp.asarray(tag.transpose(1, 2, 0, 3))[None]))
    start = time.perf_counter()
    found = posejax_people(codec, decode, refine, combined, tag)
    middle = time.perf_counter()
    expected, _ = parser_ref.parse(det, tag)
    end = time.perf_counter()
    if len(found) != len(expected) or not np.allclose(
        found.keypoints, expected[:, :, :2], atol=1e-4):
      raise SystemExit(f'image {i}: posejax and the reference found different people.')
    if i:  # the first image compiles
      ours.append(middle - start)
      theirs.append(end - middle)
      people_counts.append(len(found))
  report(args, ours, theirs, people_counts)


def report(args, ours, theirs, people_counts):
  ours_ms, theirs_ms = 1e3 * statistics.median(ours), 1e3 * statistics.median(theirs)
  result = dict(codec=args.codec, size=args.size, people=args.people, images=args.images,
                tag_dims=(2 if args.flip else 1) if args.codec != 'part_affinity' else 0,
                people_found=people_counts,
                posejax_ms=ours_ms, reference_ms=theirs_ms,
                speedup=theirs_ms / ours_ms, backend=jax.default_backend(),
                same_people=True)
  print(f'{args.size}x{args.size}, {args.people} people: posejax {ours_ms:.1f} ms, '
        f'reference {theirs_ms:.1f} ms per image (median of {args.images}): '
        f'{theirs_ms / ours_ms:.1f}x; the same people on every image')
  print(json.dumps(result))


if __name__ == '__main__':
  main()
