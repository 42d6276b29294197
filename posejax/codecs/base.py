"""What every codec provides, and the checks codecs share.

A codec owns how keypoints become training targets and come back. The train
step and prediction see codecs only through `Codec`:

  channels                 output channels per keypoint the network returns
                           (each stage outputs K * channels)
  output_size              (h, w) of each stage's output map
  encode(kp, vis)          (targets, weights): targets rendered on device from
                           (..., K, 2) keypoints in input pixels and (..., K)
                           COCO visibility; weights (..., K) in {0, 1}
  encode_batch(batch)      the same from a train batch (posejax/batches.py);
                           bottom-up codecs also read its ignore mask
  output_channels(K)       channels of every supervised output for K keypoints
                           (K * channels unless the codec says otherwise)
  joint_losses(o, t, w)    (B, K) loss per instance and keypoint of one stage's
                           output (the arithmetic lives in posejax/losses.py);
                           a bottom-up codec may score other channel groups
                           (B, N), e.g. the part affinity fields'
  stage_losses(os, t, w)   the (B, K) losses of every supervised output, in
                           order (`joint_losses` of each, unless the codec
                           renders per-output targets, as the heatmap codec
                           with `stage_sigmas`)
  decode(o)                (keypoints (..., K, 2) in input pixels, scores (..., K))
  merge_flipped(o, of_f, flip_index)
                           flip test: `o` merged with the output of the
                           mirrored input, mirrored back with pairs swapped
  maps(o)                  (..., h, w, K) maps to look at in pictures
  ideal_output(targets)    what a perfect network outputs for `targets`: the
                           output layout the network must produce
  round_trip_bound         the largest error, in input pixels, of decoding
                           the ideal output of keypoints away from the border

Bottom-up codecs (`bottom_up`) decode whole images into people:
`combine(outputs)` the maps to decode, `merge_flipped` and `merge_scales` on
them, `decode(combined)` candidates on device, `group(candidates of one
image)` a `grouping.People` on the host, and, with `refine_missing`, a
second device step `refine` (associative embedding).

Everything is jnp and runs inside the jitted train and predict steps: the host
ships coordinates, never targets. A new codec is one module of this package
(a frozen dataclass deriving `Codec` and a `from_config(config,
num_keypoints)`) plus one
entry in `posejax.codecs.CODECS`; tests/test_codec_contract.py runs every
entry through the same checks.
"""

from __future__ import annotations

import abc

import jax
import jax.numpy as jnp
import numpy as np


class Codec(abc.ABC):
  """The contract above; subclasses are frozen dataclasses."""

  # Output channels per keypoint.
  channels: int = 1
  # Whether the network sees whole images with every person in them
  # (posejax/data/pipeline/whole_image.py) and decoding groups keypoints
  # into people (posejax/codecs/embedding.py), rather than one crop per
  # person.
  bottom_up: bool = False

  @property
  @abc.abstractmethod
  def output_size(self) -> tuple[int, int]:
    """(height, width) of each supervised output of the network."""

  @abc.abstractmethod
  def encode(self, keypoints: jax.Array, visibility: jax.Array):
    """(targets, weights (..., K)) from keypoints in input pixels."""

  def encode_batch(self, batch):
    """`encode` of a train batch's keypoints and visibility."""
    return self.encode(batch['keypoints'], batch['visibility'])

  def output_channels(self, num_keypoints: int) -> int:
    """Channels of each supervised output of the network."""
    return num_keypoints * self.channels

  @abc.abstractmethod
  def joint_losses(self, output: jax.Array, targets, weights: jax.Array) -> jax.Array:
    """(B, K) loss of one stage's output."""

  def stage_losses(self, outputs, targets, weights) -> list[jax.Array]:
    """(B, K) losses of every supervised output."""
    return [self.joint_losses(o, targets, weights) for o in outputs]

  @abc.abstractmethod
  def decode(self, output: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(keypoints (..., K, 2) in input pixels, scores (..., K))."""

  @abc.abstractmethod
  def merge_flipped(self, output: jax.Array, of_flipped: jax.Array,
                    flip_index) -> jax.Array:
    """Flip test: `output` merged with the output of the mirrored input."""

  @abc.abstractmethod
  def maps(self, output: jax.Array) -> jax.Array:
    """(..., h, w, K) maps for pictures."""

  @abc.abstractmethod
  def ideal_output(self, targets) -> jax.Array:
    """The output a perfect network gives for `targets` (one stage)."""

  @property
  @abc.abstractmethod
  def round_trip_bound(self) -> float:
    """Largest decoding error of `ideal_output`, in input pixels."""

  def check_output(self, output: jax.Array) -> None:
    """A clear error, while tracing, for an output of the wrong size."""
    if tuple(output.shape[1:3]) != tuple(self.output_size):
      h, w = self.output_size
      raise ValueError(
          f'The network returns {output.shape[1]}x{output.shape[2]} maps but '
          f'the codec renders {h}x{w} targets (input size / codec.stride): '
          "set codec.stride to the network's output stride (e.g. model.stride "
          'for HRNet and the hourglass).')


def check_stride(input_size, stride: int) -> tuple[int, int]:
  """The (h, w) output size of `input_size` at `stride`, which must divide it."""
  h, w = input_size
  if stride <= 0 or h % stride or w % stride:
    raise ValueError(
        f'input size {tuple(input_size)} is not divisible by the heatmap '
        f'stride {stride}; change input.size or codec.stride.')
  return h // stride, w // stride


def check_choice(field: str, value: str, choices) -> str:
  if value not in choices:
    raise ValueError(f'{field} must be one of {tuple(choices)}, got {value!r}.')
  return value


def flip_keypoints(keypoints, visibility, width: int, flip_index):
  """Mirrors keypoints in an image of `width` pixels and swaps pairs."""
  flip_index = np.asarray(flip_index)
  x = (width - 1) - keypoints[..., 0]
  flipped = jnp.stack([x, keypoints[..., 1]], axis=-1)
  return flipped[..., flip_index, :], visibility[..., flip_index]
