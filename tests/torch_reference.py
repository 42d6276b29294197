"""PyTorch modules of the official networks' structure, sizes as parameters.

The torch side of the equivalence tests (tests/models/test_torch_equivalence_*)
and of the PyTorch half of benchmarks/gpu.py: PoseHighResolutionNet
(pose_hrnet.py), PoseResNet (pose_resnet.py, SimpleBaselines) and PoseNet
(princeton-vl pytorch_stacked_hourglass), written from their published
structure with the same module names, so that state-dict keys match.
"""

import torch
from torch import nn as tnn


# --- HRNet (deep-high-resolution-net.pytorch, pose_hrnet.py) ----------------

def _bn(c):
  return tnn.BatchNorm2d(c, momentum=0.1)


class TorchBasicBlock(tnn.Module):
  expansion = 1

  def __init__(self, inplanes, planes, stride=1, downsample=None):
    super().__init__()
    self.conv1 = tnn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
    self.bn1 = _bn(planes)
    self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
    self.bn2 = _bn(planes)
    self.downsample = downsample

  def forward(self, x):
    y = torch.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    r = x if self.downsample is None else self.downsample(x)
    return torch.relu(y + r)


class TorchBottleneck(tnn.Module):
  """`Bottleneck` of pose_hrnet.py and pose_resnet.py: stride on the 3x3 conv."""

  expansion = 4

  def __init__(self, inplanes, planes, stride=1, downsample=None):
    super().__init__()
    self.conv1 = tnn.Conv2d(inplanes, planes, 1, bias=False)
    self.bn1 = _bn(planes)
    self.conv2 = tnn.Conv2d(planes, planes, 3, stride, 1, bias=False)
    self.bn2 = _bn(planes)
    self.conv3 = tnn.Conv2d(planes, planes * 4, 1, bias=False)
    self.bn3 = _bn(planes * 4)
    self.downsample = downsample

  def forward(self, x):
    y = torch.relu(self.bn1(self.conv1(x)))
    y = torch.relu(self.bn2(self.conv2(y)))
    y = self.bn3(self.conv3(y))
    r = x if self.downsample is None else self.downsample(x)
    return torch.relu(y + r)


def projection(inplanes, planes, stride=1):
  return tnn.Sequential(tnn.Conv2d(inplanes, planes, 1, stride, bias=False),
                        _bn(planes))


class TorchHRModule(tnn.Module):
  """Branches of BasicBlocks, then SUM fusion (nearest upsampling)."""

  def __init__(self, widths, num_blocks, multi_scale_output=True):
    super().__init__()
    n = len(widths)
    self.branches = tnn.ModuleList(
        tnn.Sequential(*[TorchBasicBlock(w, w) for _ in range(num_blocks)])
        for w in widths)
    self.fuse_layers = tnn.ModuleList()
    for i in range(n if multi_scale_output else 1):
      row = tnn.ModuleList()
      for j in range(n):
        if j > i:
          row.append(tnn.Sequential(
              tnn.Conv2d(widths[j], widths[i], 1, bias=False), _bn(widths[i]),
              tnn.Upsample(scale_factor=2**(j - i), mode='nearest')))
        elif j == i:
          row.append(None)
        else:
          steps = []
          for k in range(i - j):
            last = k == i - j - 1
            out = widths[i] if last else widths[j]
            layers = [tnn.Conv2d(widths[j], out, 3, 2, 1, bias=False), _bn(out)]
            if not last:
              layers.append(tnn.ReLU())
            steps.append(tnn.Sequential(*layers))
          row.append(tnn.Sequential(*steps))
      self.fuse_layers.append(row)

  def forward(self, xs):
    xs = [branch(x) for branch, x in zip(self.branches, xs)]
    if len(xs) == 1:
      return xs
    outs = []
    for row in self.fuse_layers:
      y = 0
      for j, layer in enumerate(row):
        y = y + (xs[j] if layer is None else layer(xs[j]))
      outs.append(torch.relu(y))
    return outs


class TorchPoseHRNet(tnn.Module):
  """The official PoseHighResolutionNet's structure, sizes as parameters."""

  def __init__(self, num_joints, stem_width, stage1_blocks, widths,
               num_modules, num_blocks):
    super().__init__()
    self.conv1 = tnn.Conv2d(3, stem_width, 3, 2, 1, bias=False)
    self.bn1 = _bn(stem_width)
    self.conv2 = tnn.Conv2d(stem_width, stem_width, 3, 2, 1, bias=False)
    self.bn2 = _bn(stem_width)
    blocks, inplanes = [], stem_width
    for _ in range(stage1_blocks):
      down = (None if inplanes == stem_width * 4
              else projection(inplanes, stem_width * 4))
      blocks.append(TorchBottleneck(inplanes, stem_width, 1, down))
      inplanes = stem_width * 4
    self.layer1 = tnn.Sequential(*blocks)
    previous = [inplanes]
    self.num_stages = len(widths)
    for stage in range(2, self.num_stages + 1):
      current = list(widths[:stage])
      transition = tnn.ModuleList()
      for i, w in enumerate(current):
        if i < len(previous):
          transition.append(None if previous[i] == w else tnn.Sequential(
              tnn.Conv2d(previous[i], w, 3, 1, 1, bias=False), _bn(w),
              tnn.ReLU()))
        else:
          steps, c = [], previous[-1]
          for k in range(i + 1 - len(previous)):
            out = w if k == i - len(previous) else c
            steps.append(tnn.Sequential(
                tnn.Conv2d(c, out, 3, 2, 1, bias=False), _bn(out), tnn.ReLU()))
            c = out
          transition.append(tnn.Sequential(*steps))
      setattr(self, f'transition{stage - 1}', transition)
      n = num_modules[stage - 2]
      setattr(self, f'stage{stage}', tnn.Sequential(*[
          _ListModule(TorchHRModule(
              current, num_blocks,
              multi_scale_output=not (stage == self.num_stages and m == n - 1)))
          for m in range(n)]))
      previous = current
    self.final_layer = tnn.Conv2d(widths[0], num_joints, 1)

  def features(self, x):
    """The highest-resolution branch after the last stage."""
    x = torch.relu(self.bn1(self.conv1(x)))
    x = torch.relu(self.bn2(self.conv2(x)))
    xs = [self.layer1(x)]
    for stage in range(2, self.num_stages + 1):
      transition = getattr(self, f'transition{stage - 1}')
      xs = [xs[i] if t is None and i < len(xs) else t(xs[-1] if i >= len(xs)
                                                        else xs[i])
            for i, t in enumerate(transition)]
      xs = getattr(self, f'stage{stage}')(xs)
    return xs[0]

  def forward(self, x):
    return self.final_layer(self.features(x))


class _ListModule(tnn.Module):
  """Lets a module taking a list sit in nn.Sequential, without a key level."""

  def __init__(self, module):
    super().__init__()
    self.inner = module

  def forward(self, xs):
    return self.inner(xs)


# --- PyTorch references: SimpleBaselines ------------------------------------


class TorchPoseResNet(tnn.Module):
  """`pose_resnet.PoseResNet` with a configurable base width."""

  def __init__(self, blocks, width, deconv_features, deconv_kernels,
               num_joints):
    super().__init__()
    self.conv1 = tnn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
    self.bn1 = tnn.BatchNorm2d(width, momentum=0.1)
    self.maxpool = tnn.MaxPool2d(3, stride=2, padding=1)
    inplanes = width
    for stage, num_blocks in enumerate(blocks):
      planes = width * 2**stage
      stride = 1 if stage == 0 else 2
      layers = []
      for b in range(num_blocks):
        s = stride if b == 0 else 1
        downsample = None
        if s != 1 or inplanes != planes * 4:
          downsample = projection(inplanes, planes * 4, s)
        layers.append(TorchBottleneck(inplanes, planes, s, downsample))
        inplanes = planes * 4
      setattr(self, f'layer{stage + 1}', tnn.Sequential(*layers))
    deconvs = []
    for features, kernel in zip(deconv_features, deconv_kernels):
      padding, output_padding = {4: (1, 0), 3: (1, 1), 2: (0, 0)}[kernel]
      deconvs += [
          tnn.ConvTranspose2d(inplanes, features, kernel, stride=2,
                             padding=padding, output_padding=output_padding,
                             bias=False),
          tnn.BatchNorm2d(features, momentum=0.1),
          tnn.ReLU(inplace=True),
      ]
      inplanes = features
    self.deconv_layers = tnn.Sequential(*deconvs)
    self.final_layer = tnn.Conv2d(inplanes, num_joints, 1)

  def forward(self, x):
    x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
    x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
    return self.final_layer(self.deconv_layers(x))


# --- PyTorch references: Stacked Hourglass ----------------------------------


class TorchConv(tnn.Module):
  """`layers.Conv`: conv with bias, optional BN, optional ReLU."""

  def __init__(self, inp_dim, out_dim, kernel_size=3, stride=1, bn=False,
               relu=True):
    super().__init__()
    self.conv = tnn.Conv2d(inp_dim, out_dim, kernel_size, stride,
                          padding=(kernel_size - 1) // 2, bias=True)
    self.bn = tnn.BatchNorm2d(out_dim) if bn else None
    self.relu = relu

  def forward(self, x):
    x = self.conv(x)
    if self.bn is not None:
      x = self.bn(x)
    return torch.relu(x) if self.relu else x


class TorchResidual(tnn.Module):
  """`layers.Residual`: `skip_layer` always built, used if widths differ."""

  def __init__(self, inp_dim, out_dim):
    super().__init__()
    half = out_dim // 2
    self.bn1 = tnn.BatchNorm2d(inp_dim)
    self.conv1 = TorchConv(inp_dim, half, 1, relu=False)
    self.bn2 = tnn.BatchNorm2d(half)
    self.conv2 = TorchConv(half, half, 3, relu=False)
    self.bn3 = tnn.BatchNorm2d(half)
    self.conv3 = TorchConv(half, out_dim, 1, relu=False)
    self.skip_layer = TorchConv(inp_dim, out_dim, 1, relu=False)
    self.need_skip = inp_dim != out_dim

  def forward(self, x):
    residual = self.skip_layer(x) if self.need_skip else x
    out = self.conv1(torch.relu(self.bn1(x)))
    out = self.conv2(torch.relu(self.bn2(out)))
    out = self.conv3(torch.relu(self.bn3(out)))
    return out + residual


class TorchHourglass(tnn.Module):
  """`layers.Hourglass` (increase=0)."""

  def __init__(self, n, f):
    super().__init__()
    self.up1 = TorchResidual(f, f)
    self.pool1 = tnn.MaxPool2d(2, 2)
    self.low1 = TorchResidual(f, f)
    self.low2 = TorchHourglass(n - 1, f) if n > 1 else TorchResidual(f, f)
    self.low3 = TorchResidual(f, f)
    self.up2 = tnn.Upsample(scale_factor=2, mode='nearest')

  def forward(self, x):
    low = self.low3(self.low2(self.low1(self.pool1(x))))
    return self.up1(x) + self.up2(low)


class TorchMerge(tnn.Module):

  def __init__(self, x_dim, y_dim):
    super().__init__()
    self.conv = TorchConv(x_dim, y_dim, 1, relu=False)

  def forward(self, x):
    return self.conv(x)


class TorchPoseNet(tnn.Module):
  """`posenet.PoseNet` with a configurable hourglass depth; NCHW in/out."""

  def __init__(self, nstack, inp_dim, oup_dim, depth):
    super().__init__()
    self.nstack = nstack
    self.pre = tnn.Sequential(
        TorchConv(3, 64, 7, 2, bn=True, relu=True),
        TorchResidual(64, 128),
        tnn.MaxPool2d(2, 2),
        TorchResidual(128, 128),
        TorchResidual(128, inp_dim))
    self.hgs = tnn.ModuleList(
        [tnn.Sequential(TorchHourglass(depth, inp_dim)) for _ in range(nstack)])
    self.features = tnn.ModuleList([
        tnn.Sequential(TorchResidual(inp_dim, inp_dim),
                      TorchConv(inp_dim, inp_dim, 1, bn=True, relu=True))
        for _ in range(nstack)])
    self.outs = tnn.ModuleList(
        [TorchConv(inp_dim, oup_dim, 1, relu=False) for _ in range(nstack)])
    self.merge_features = tnn.ModuleList(
        [TorchMerge(inp_dim, inp_dim) for _ in range(nstack - 1)])
    self.merge_preds = tnn.ModuleList(
        [TorchMerge(oup_dim, inp_dim) for _ in range(nstack - 1)])

  def forward(self, x):
    x = self.pre(x)
    preds_per_stack = []
    for i in range(self.nstack):
      feature = self.features[i](self.hgs[i](x))
      preds = self.outs[i](feature)
      preds_per_stack.append(preds)
      if i < self.nstack - 1:
        x = x + self.merge_preds[i](preds) + self.merge_features[i](feature)
    return preds_per_stack


class TorchHigherHRNet(TorchPoseHRNet):
  """The official PoseHigherResolutionNet's head on the pose HRNet backbone
  (HigherHRNet-Human-Pose-Estimation, lib/models/pose_higher_hrnet.py):
  final_layers[0] (heatmaps + tags at 1/4), deconv_layers[0] on the
  concatenation (ConvTranspose 4x4/2 + BN + ReLU, then BasicBlocks),
  final_layers[1] (heatmaps at 1/2)."""

  def __init__(self, num_joints, stem_width, stage1_blocks, widths,
               num_modules, num_blocks, deconv_blocks=4):
    super().__init__(num_joints, stem_width, stage1_blocks, widths,
                     num_modules, num_blocks)
    del self.final_layer
    w = widths[0]
    self.final_layers = tnn.ModuleList([tnn.Conv2d(w, 2 * num_joints, 1),
                                        tnn.Conv2d(w, num_joints, 1)])
    layers = [tnn.Sequential(
        tnn.ConvTranspose2d(w + 2 * num_joints, w, 4, 2, 1, 0, bias=False),
        _bn(w), tnn.ReLU())]
    layers += [tnn.Sequential(TorchBasicBlock(w, w)) for _ in range(deconv_blocks)]
    self.deconv_layers = tnn.ModuleList([tnn.Sequential(*layers)])

  def forward(self, x):
    x = self.features(x)
    first = self.final_layers[0](x)
    y = self.deconv_layers[0](torch.cat([x, first], 1))
    return [first, self.final_layers[1](y)]


# --- OpenPose (Hzzone/pytorch-openpose, src/model.py bodypose_model) ---------

def _openpose_block(layers, no_relu):
  """`make_layers`: an nn.Sequential of named convs (and pools), ReLU after
  every conv whose name is not in `no_relu`."""
  from collections import OrderedDict  # pylint: disable=g-import-not-at-top
  modules = []
  for name, v in layers:
    if name.startswith('pool'):
      modules.append((name, tnn.MaxPool2d(2, 2, 0)))
      continue
    modules.append((name, tnn.Conv2d(v[0], v[1], v[2], 1, v[2] // 2)))
    if name not in no_relu:
      modules.append(('relu_' + name, tnn.ReLU()))
  return tnn.Sequential(OrderedDict(modules))


class TorchOpenPoseBody(tnn.Module):
  """bodypose_model with its sizes as parameters (defaults the CMU model's).

  As the port: its no-ReLU list names Mconv7_stage{T}_L1 twice and not
  Mconv7_stage{T}_L2, so the last stage's confidence maps pass a ReLU.
  """

  def __init__(self, heatmaps=19, pafs=38, stages=6, vgg=(64, 128, 256, 512),
               cpm=(256, 128), features=128, hidden=512, kernel=7):
    super().__init__()
    no_relu = {'conv5_5_CPM_L1', 'conv5_5_CPM_L2'}
    for t in range(2, stages + 1):
      no_relu |= {f'Mconv7_stage{t}_L1', f'Mconv7_stage{t}_L2'}
    no_relu.discard(f'Mconv7_stage{stages}_L2')
    trunk, c = [], 3
    names = (('conv1_1', 'conv1_2'), ('conv2_1', 'conv2_2'),
             ('conv3_1', 'conv3_2', 'conv3_3', 'conv3_4'), ('conv4_1', 'conv4_2'))
    for block, (group, width) in enumerate(zip(names, vgg)):
      for name in group:
        trunk.append((name, (c, width, 3)))
        c = width
      if block < 3:
        trunk.append((f'pool{block + 1}_stage1', None))
    trunk += [('conv4_3_CPM', (c, cpm[0], 3)), ('conv4_4_CPM', (cpm[0], cpm[1], 3))]
    self.model0 = _openpose_block(trunk, no_relu)
    self.stages = stages
    for b, out in ((1, pafs), (2, heatmaps)):
      first = [(f'conv5_{i}_CPM_L{b}', (cpm[1] if i == 1 else features, features, 3))
               for i in (1, 2, 3)]
      first += [(f'conv5_4_CPM_L{b}', (features, hidden, 1)),
                (f'conv5_5_CPM_L{b}', (hidden, out, 1))]
      setattr(self, f'model1_{b}', _openpose_block(first, no_relu))
      for t in range(2, stages + 1):
        width_in = pafs + heatmaps + cpm[1]
        layers = [(f'Mconv{i}_stage{t}_L{b}', (width_in if i == 1 else features,
                                               features, kernel)) for i in range(1, 6)]
        layers += [(f'Mconv6_stage{t}_L{b}', (features, features, 1)),
                   (f'Mconv7_stage{t}_L{b}', (features, out, 1))]
        setattr(self, f'model{t}_{b}', _openpose_block(layers, no_relu))

  def forward(self, x):
    """Every stage's (PAFs, confidence maps), as the port's forward returns
    its last stage's pair."""
    features = self.model0(x)
    out, outputs = features, []
    for t in range(1, self.stages + 1):
      paf = getattr(self, f'model{t}_1')(out)
      heat = getattr(self, f'model{t}_2')(out)
      outputs.append((paf, heat))
      out = torch.cat([paf, heat, features], 1)
    return outputs


# --- CPN (GengDavid/pytorch-cpn) and MSPN (megvii-research/MSPN) -------------

def _up(x, size):
  return tnn.functional.interpolate(x, size=size, mode='bilinear', align_corners=True)


class TorchResNetTrunk(tnn.Module):
  """torchvision's ResNet returning [C5, C4, C3, C2] (the port's `resnet`)."""

  def __init__(self, blocks, width):
    super().__init__()
    self.conv1 = tnn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
    self.bn1 = _bn(width)
    self.maxpool = tnn.MaxPool2d(3, stride=2, padding=1)
    inplanes = width
    for stage, num_blocks in enumerate(blocks):
      planes, layers = width * 2**stage, []
      for b in range(num_blocks):
        s = 2 if stage and not b else 1
        down = projection(inplanes, planes * 4, s) if s != 1 or inplanes != planes * 4 else None
        layers.append(TorchBottleneck(inplanes, planes, s, down))
        inplanes = planes * 4
      setattr(self, f'layer{stage + 1}', tnn.Sequential(*layers))

  def forward(self, x):
    x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
    outs = []
    for i in range(1, 5):
      x = getattr(self, f'layer{i}')(x)
      outs.append(x)
    return outs[::-1]


class TorchRefineBottleneck(tnn.Module):
  """The port's refineNet `Bottleneck`: planes * 2 out, always projected."""

  def __init__(self, inplanes, planes):
    super().__init__()
    self.conv1 = tnn.Conv2d(inplanes, planes, 1, bias=False)
    self.bn1 = _bn(planes)
    self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
    self.bn2 = _bn(planes)
    self.conv3 = tnn.Conv2d(planes, planes * 2, 1, bias=False)
    self.bn3 = _bn(planes * 2)
    self.downsample = projection(inplanes, planes * 2)

  def forward(self, x):
    y = torch.relu(self.bn1(self.conv1(x)))
    y = torch.relu(self.bn2(self.conv2(y)))
    return torch.relu(self.bn3(self.conv3(y)) + self.downsample(x))


class _TorchGlobalNet(tnn.Module):

  def __init__(self, in_channels, features, joints, out_size):
    super().__init__()
    self.out_size = out_size
    self.laterals = tnn.ModuleList(
        tnn.Sequential(tnn.Conv2d(c, features, 1, bias=False), _bn(features), tnn.ReLU())
        for c in in_channels)
    self.upsamples = tnn.ModuleList(
        tnn.Sequential(tnn.Upsample(scale_factor=2, mode='bilinear', align_corners=True),
                       tnn.Conv2d(features, features, 1, bias=False), _bn(features))
        for _ in in_channels[1:])
    self.predict = tnn.ModuleList(
        tnn.Sequential(tnn.Conv2d(features, features, 1, bias=False), _bn(features),
                       tnn.ReLU(), tnn.Conv2d(features, joints, 3, 1, 1, bias=False),
                       tnn.Upsample(size=out_size, mode='bilinear', align_corners=True),
                       _bn(joints))
        for _ in in_channels)

  def forward(self, levels):
    pyramid, outs = [], []
    for i, level in enumerate(levels):
      f = self.laterals[i](level) + (up if i else 0)
      pyramid.append(f)
      if i < len(levels) - 1:
        up = self.upsamples[i](f)
      outs.append(self.predict[i](f))
    return pyramid, outs


class _TorchRefineNet(tnn.Module):

  def __init__(self, features, planes, joints, out_size):
    super().__init__()
    self.cascade = tnn.ModuleList(
        tnn.Sequential(*[TorchRefineBottleneck(features, planes) for _ in range(3 - i)],
                       tnn.Upsample(size=out_size, mode='bilinear', align_corners=True))
        for i in range(4))
    self.final_predict = tnn.Sequential(
        TorchRefineBottleneck(4 * features, planes),
        tnn.Conv2d(2 * planes, joints, 3, 1, 1, bias=False), _bn(joints))

  def forward(self, pyramid):
    return self.final_predict(torch.cat([c(f) for c, f in zip(self.cascade, pyramid)], 1))


class TorchCPN(tnn.Module):
  """The port's `CPN`: (GlobalNet's four outputs, RefineNet's)."""

  def __init__(self, blocks=(3, 4, 6, 3), width=64, features=256, planes=128,
               joints=17, out_size=(64, 48)):
    super().__init__()
    self.resnet = TorchResNetTrunk(blocks, width)
    channels = [width * 4 * 2**s for s in (3, 2, 1, 0)]
    self.global_net = _TorchGlobalNet(channels, features, joints, out_size)
    self.refine_net = _TorchRefineNet(features, planes, joints, out_size)
    assert 2 * planes == features  # the port's final conv reads 256 channels

  def forward(self, x):
    pyramid, outs = self.global_net(self.resnet(x))
    return outs, self.refine_net(pyramid)


class TorchConvBNReLU(tnn.Module):
  """MSPN's `conv_bn_relu`: conv with bias, BN, optional ReLU."""

  def __init__(self, cin, cout, k=1, stride=1, relu=True):
    super().__init__()
    self.conv = tnn.Conv2d(cin, cout, k, stride, k // 2)
    self.bn = _bn(cout)
    self.relu = relu

  def forward(self, x):
    x = self.bn(self.conv(x))
    return torch.relu(x) if self.relu else x


class TorchMSPNBottleneck(tnn.Module):

  def __init__(self, cin, planes, stride=1, down=False):
    super().__init__()
    self.conv_bn_relu1 = TorchConvBNReLU(cin, planes)
    self.conv_bn_relu2 = TorchConvBNReLU(planes, planes, 3, stride)
    self.conv_bn_relu3 = TorchConvBNReLU(planes, 4 * planes, relu=False)
    self.downsample = TorchConvBNReLU(cin, 4 * planes, 1, stride, relu=False) if down else None

  def forward(self, x):
    y = self.conv_bn_relu3(self.conv_bn_relu2(self.conv_bn_relu1(x)))
    return torch.relu(y + (x if self.downsample is None else self.downsample(x)))


class _TorchMSPNEncoder(tnn.Module):

  def __init__(self, cin, width):
    super().__init__()
    for stage, n in enumerate((3, 4, 6, 3)):
      planes, layers = width * 2**stage, []
      for b in range(n):
        s = 2 if stage and not b else 1
        layers.append(TorchMSPNBottleneck(cin, planes, s, s != 1 or cin != 4 * planes))
        cin = 4 * planes
      setattr(self, f'layer{stage + 1}', tnn.Sequential(*layers))

  def forward(self, x, skips):
    levels = []
    for i in range(4):
      x = getattr(self, f'layer{i + 1}')(x)
      if skips is not None:
        x = x + skips[i]
      levels.append(x)
    return levels


class _TorchMSPNUnit(tnn.Module):

  def __init__(self, index, cin, features, joints, skips, cross_features):
    super().__init__()
    self.index = index
    self.u_skip = TorchConvBNReLU(cin, features, relu=False)
    if index:
      self.up_conv = TorchConvBNReLU(features, features, relu=False)
    if skips:
      self.skip1 = TorchConvBNReLU(cin, cin)
      self.skip2 = TorchConvBNReLU(features, cin)
    if skips and index == 3:
      self.cross_conv = TorchConvBNReLU(features, cross_features)
    self.res_conv1 = TorchConvBNReLU(features, features)
    self.res_conv2 = TorchConvBNReLU(features, joints, 3, relu=False)
    self.skips = skips

  def forward(self, x, coarser, out_size):
    out = self.u_skip(x)
    if self.index:
      out = out + self.up_conv(_up(coarser, x.shape[2:]))
    out = torch.relu(out)
    res = _up(self.res_conv2(self.res_conv1(out)), out_size)
    skip = self.skip1(x) + self.skip2(out) if self.skips else None
    cross = self.cross_conv(out) if self.skips and self.index == 3 else None
    return out, res, skip, cross


class _TorchMSPNStage(tnn.Module):

  def __init__(self, cin, width, features, joints, skips):
    super().__init__()
    self.downsample = _TorchMSPNEncoder(cin, width)
    self.upsample = tnn.Module()
    for u in range(4):
      setattr(self.upsample, f'up{u + 1}', _TorchMSPNUnit(
          u, width * 4 * 2**(3 - u), features, joints, skips, width))

  def forward(self, x, skips, out_size):
    levels = self.downsample(x, skips)
    out, results, new_skips, cross = None, [], [], None
    for u in range(4):
      out, res, skip, c = getattr(self.upsample, f'up{u + 1}')(levels[3 - u], out, out_size)
      results.append(res)
      new_skips.append(skip)
      cross = c if c is not None else cross
    return results, new_skips[::-1], cross


class TorchMSPN(tnn.Module):
  """The official `MSPN`: every stage's four outputs (coarsest first)."""

  def __init__(self, stages=4, width=64, features=256, joints=17):
    super().__init__()
    self.top = tnn.Module()
    self.top.conv = TorchConvBNReLU(3, width, 7, 2)
    self.stages = stages
    for s in range(stages):
      setattr(self, f'stage{s}', _TorchMSPNStage(
          width, width, features, joints, s < stages - 1))

  def forward(self, x):
    out_size = (x.shape[2] // 4, x.shape[3] // 4)
    x = tnn.functional.max_pool2d(self.top.conv(x), 3, 2, 1)
    skips, outputs = None, []
    for s in range(self.stages):
      results, new_skips, x = getattr(self, f'stage{s}')(x, skips, out_size)
      skips = new_skips if s < self.stages - 1 else None
      outputs += results
    return outputs
