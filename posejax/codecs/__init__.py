"""Codecs: how keypoints become training targets and come back.

The contract every codec fulfils is `base.Codec` (posejax/codecs/base.py);
one module per family:

  heatmap     Gaussian heatmaps on the centred, official or UDP grid, read
              with the quarter step, the official post-processing or DARK
  offsets     disks and offset fields decoded by Hough voting
  embedding   bottom-up: every person's heatmaps and associative-embedding
              tags, grouped into people on the host (grouping.py)
  affinity    bottom-up: part confidence maps and part affinity fields
              (OpenPose), assembled into people on the host (assembly.py)

`CODECS` maps `config.codec.name` to the family's `from_config`; a new codec
is one module plus one entry here.
"""

from __future__ import annotations

from posejax.codecs import affinity
from posejax.codecs import embedding
from posejax.codecs import heatmap
from posejax.codecs import offsets
from posejax.codecs.base import Codec
from posejax.codecs.embedding import AssociativeEmbeddingCodec
from posejax.codecs.affinity import PartAffinityCodec
from posejax.codecs.heatmap import HeatmapCodec
from posejax.codecs.offsets import OffsetVotingCodec

__all__ = ['AssociativeEmbeddingCodec', 'CODECS', 'Codec', 'HeatmapCodec',
           'OffsetVotingCodec', 'PartAffinityCodec', 'codec_from_config']

CODECS = {
    'heatmap': heatmap.from_config,
    'offsets': offsets.from_config,
    'associative_embedding': embedding.from_config,
    'part_affinity': affinity.from_config,
}


def codec_from_config(config, num_keypoints: int) -> Codec:
  """The codec of `config.codec.name` for the dataset's `num_keypoints`,
  checked against the crop it reads."""
  name = config.codec.name
  if name not in CODECS:
    raise ValueError(f'Unknown codec.name {name!r}; known: {list(CODECS)}.')
  grid, crop = config.codec.grid, config.input.crop
  if (grid == 'udp') != (crop == 'udp'):
    raise ValueError(
        f"codec.grid={grid!r} with input.crop={crop!r}: UDP's heatmap grid and "
        "crop go together (both 'udp', e.g. the `udp` config variant), or "
        'neither.')
  return CODECS[name](config, num_keypoints)
