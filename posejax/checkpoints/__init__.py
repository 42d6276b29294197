"""PyTorch checkpoints into posejax: official pose networks and ImageNet backbones.

  layouts      where each network's variables sit in a PyTorch state dict:
               `LAYOUTS` (the official pose checkpoints, one `TorchLayout` per
               network) and `BACKBONES` (the ImageNet classification
               checkpoints a pose network starts from), and the key and tensor
               conversion both kinds share (`TorchLayout.match`)
  torch_files  state-dict files: `.pth`/`.pt` (read with torch, imported only
               then), `.npz` and `.safetensors`; wrapper-prefix stripping; the
               key listings of error messages
  official     an official pose checkpoint -> posejax variables, and the
               step-0 checkpoint of a run directory (`import_checkpoint`)
  imagenet     an ImageNet checkpoint -> the backbone of a new run
               (`load_backbone`, `with_backbone`)

Calls go one way: `official` and `imagenet` use `layouts` and `torch_files`
(and `layouts` uses `torch_files`); neither of the two uses the other. Their
command lines are `python -m posejax.import_torch` and
`python -m posejax.pretrained`.
"""
