"""Where each network's variables sit in a PyTorch state dict.

`LAYOUTS`: the official pose checkpoints, one `TorchLayout` per network:
the official deep-high-resolution-net.pytorch HRNet (and HigherHRNet),
microsoft/human-pose-estimation.pytorch SimpleBaselines,
princeton-vl/pytorch_stacked_hourglass and princeton-vl/pose-ae-train.

`BACKBONES`: the ImageNet classification checkpoints a pose network starts
from; their keys are those of the network's own `LAYOUTS` entry, so one key
mapping and one conversion (`TorchLayout.match`) serve both.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Mapping, Sequence

from flax import traverse_util
import numpy as np

from posejax.checkpoints import torch_files
from posejax.models import common
from posejax.models import cpn
from posejax.models import hourglass
from posejax.models import hrnet
from posejax.models import mspn
from posejax.models import openpose
from posejax.models import pose_ae_hourglass
from posejax.models import simple_baseline
from posejax.models import summary


def _conv_kernel_to_flax(value: np.ndarray) -> np.ndarray:
  # nn.Conv2d weight (out, in, kh, kw) -> Flax (kh, kw, in, out).
  return value.transpose(2, 3, 1, 0) if value.ndim == 4 else value


def _to_flax_by(weight_axes):
  """A `TorchLayout.to_flax` from a network's `torch_weight_axes`."""
  def to_flax(path, value: np.ndarray) -> np.ndarray:
    axes = weight_axes(path)
    if axes is None:
      return value
    return value.transpose(np.argsort(axes))  # the inverse permutation
  return to_flax


@dataclasses.dataclass
class Match:
  """A state dict laid onto a model's variables, by flat Flax path."""

  state_dict: dict[str, Any]  # without its wrapper prefix
  keys: dict[tuple[str, ...], str]  # every variable's state-dict key
  converted: dict[tuple[str, ...], np.ndarray]  # in Flax layout and dtype
  kept: list[str]  # keys not looked up (`keep`), in variable order
  missing: list[str]  # keys the state dict lacks
  misshaped: list[str]  # 'key (converted shape) != (expected shape)'


@dataclasses.dataclass(frozen=True)
class TorchLayout:
  """How one network family's variables sit in its official state dict.

  Attributes:
    key: Flax variable path (below the collection) -> state-dict key.
    to_flax: (path, torch value) -> Flax value (layout only, e.g. kernels).
    unused: model -> keys of parameters the original creates but never uses.
  """
  key: Callable[[Sequence[str]], str]
  to_flax: Callable[[Sequence[str], np.ndarray], np.ndarray] = (
      lambda path, value: _conv_kernel_to_flax(value))
  unused: Callable[[Any], frozenset[str]] = lambda model: frozenset()
  # State-dict key -> the key `key` gives, for files whose keys differ from
  # the module's (OpenPose's body_pose_model.pth).
  rename: Callable[[str], str] = lambda key: key

  def match(self, state_dict: Mapping[str, Any], model, input_size,
            keep: str | None = None) -> Match:
    """Converts the value of each of `model`'s variables from `state_dict`.

    Args:
      state_dict: key -> array (numpy or anything `np.asarray` takes), with
        or without a wrapper prefix.
      model: the Linen module the weights are for.
      input_size: (height, width) the model is initialised at.
      keep: a regular expression; variables whose key it matches at the
        start are not looked up (they keep their initialisation).
    """
    flat = traverse_util.flatten_dict(
        summary.abstract_variables(model, input_size))
    keys = {path: self.key(path[1:]) for path in flat}
    state_dict = torch_files.strip_prefix(
        {self.rename(k): v for k, v in state_dict.items()}, set(keys.values()))
    matched = Match(state_dict, keys, {}, [], [], [])
    for path, leaf in flat.items():
      key = keys[path]
      if keep is not None and re.match(keep, key):
        matched.kept.append(key)
      elif key not in state_dict:
        matched.missing.append(key)
      else:
        value = self.to_flax(path[1:], np.asarray(state_dict[key]))
        if value.shape != leaf.shape:
          matched.misshaped.append(
              f'{key} {tuple(value.shape)} != {tuple(leaf.shape)}')
        else:
          matched.converted[path] = value.astype(leaf.dtype)
    return matched


LAYOUTS: dict[str, TorchLayout] = {
    # Also HigherHRNet (head='higher'), whose deconvolution kernel is laid
    # out as ConvTranspose2d's.
    'hrnet': TorchLayout(key=hrnet.torch_state_dict_key,
                         to_flax=_to_flax_by(hrnet.torch_weight_axes)),
    'simple_baseline': TorchLayout(
        key=simple_baseline.torch_state_dict_key,
        to_flax=_to_flax_by(simple_baseline.torch_weight_axes)),
    # princeton-vl/pose-ae-train (associative embedding, COCO).
    'ae_hourglass': TorchLayout(key=pose_ae_hourglass.torch_state_dict_key),
    # Hzzone/pytorch-openpose: the CMU body model (body_pose_model.pth).
    'openpose': TorchLayout(key=openpose.torch_state_dict_key,
                            rename=openpose.torch_file_key),
    # GengDavid/pytorch-cpn (CPN50, CPN101); `rename` also reads
    # torchvision's ResNet keys, for the ImageNet start.
    'cpn': TorchLayout(key=cpn.torch_state_dict_key, rename=cpn.torch_file_key),
    # megvii-research/MSPN; `rename` also reads torchvision's ResNet-50 keys
    # onto the first stage's encoder.
    'mspn': TorchLayout(key=mspn.torch_state_dict_key, rename=mspn.torch_file_key),
    'hourglass': TorchLayout(key=hourglass.torch_state_dict_key,
                             unused=hourglass.unused_torch_state_dict_keys),
    # No official checkpoint: the layout serves its ImageNet ResNet-50 encoder
    # (`BACKBONES`), named as torchvision's.
    'asymmetric_hourglass': TorchLayout(key=common.torch_state_dict_key),
}


@dataclasses.dataclass(frozen=True)
class Backbone:
  """How a network family's backbone sits in its ImageNet checkpoint.

  The backbone's keys are those of the pose network's own official layout
  (`LAYOUTS`), so the same key mapping serves both.
  """

  # Pose-network keys the classifier lacks: they keep their initialisation.
  head: str  # a regular expression matched at the start of a key
  # Keys only a classification checkpoint has; ignored when loading.
  classification_only: str
  # One of them, required: without it the file is no classification network.
  classifier_key: str
  # Where the published weights come from, for the missing-file message.
  published: str


BACKBONES: dict[str, Backbone] = {
    'hrnet': Backbone(
        head=r'(final_layers?|deconv_layers|head)\.',
        # The classification head, and the fusions into branches 1-3 of the
        # last module, which a pose HRNet (one output branch) does not have.
        classification_only=(r'(incre_modules|downsamp_modules|final_layer|'
                             r'classifier)\.|stage4\.\d+\.fuse_layers\.[1-9]'),
        classifier_key='classifier.weight',
        published=('HRNet-Image-Classification (hrnet_w18/w32/w48-*.pth, linked '
                   'from the README of github.com/leoxiaobin/deep-high-resolution-'
                   'net.pytorch; hrnetv2_w18_imagenet_pretrained.pth from '
                   'github.com/HRNet/HRNet-Facial-Landmark-Detection)')),
    'simple_baseline': Backbone(
        head=r'(deconv_layers|final_layer)\.',
        classification_only=r'fc\.',
        classifier_key='fc.weight',
        published=("torchvision's ImageNet ResNets (resnet50-19c8e357.pth, "
                   'resnet101-5d3b4d8f.pth, resnet152-b121ed2d.pth, from '
                   'download.pytorch.org/models/)')),
    'cpn': Backbone(
        head=r'(global_net|refine_net)\.',
        classification_only=r'resnet\.fc\.',  # renamed from fc. (cpn.torch_file_key)
        classifier_key='resnet.fc.weight',
        published=("torchvision's ImageNet ResNets (resnet50-19c8e357.pth, "
                   'resnet101-5d3b4d8f.pth, from download.pytorch.org/models/)')),
    # The first stage's encoder and the stem; torchvision's convolutions have
    # no bias, so MSPN's conv biases keep their initialisation (zero), as
    # with the official resnet-50_rename.pth.
    'mspn': Backbone(
        head=r'(stage[1-9]|stage0\.upsample\.|.*\.conv\.bias$)',
        classification_only=r'fc\.',
        classifier_key='fc.weight',
        published=("torchvision's ImageNet ResNet-50 (resnet50-19c8e357.pth, "
                   'from download.pytorch.org/models/)')),
    # VGG-19's first ten convolutions (model0.conv1_1 ... conv4_2, renamed
    # from torchvision's `features` indices by openpose.torch_file_key).
    'openpose': Backbone(
        head=r'(model0\.conv4_[34]_CPM|model\d+_\d)\.',
        classification_only=r'(features\.(2[3-9]|3[0-9])|classifier)\.',
        classifier_key='classifier.6.weight',
        published=("torchvision's ImageNet VGG-19 (vgg19-dcbb9e9d.pth, from "
                   'download.pytorch.org/models/)')),
    'asymmetric_hourglass': Backbone(
        # The encoder's conv1..layer3 are ResNet-50's; its dilated layer4 is
        # narrower (layer4_planes) and keeps its initialisation, as do the
        # decoder and the stacks.
        head=r'(layer4|decoder_|stack\d|head|merge_)',
        classification_only=r'(fc|layer4)\.',
        classifier_key='fc.weight',
        published=("torchvision's ImageNet ResNet-50 (resnet50-19c8e357.pth, "
                   'from download.pytorch.org/models/)')),
}
