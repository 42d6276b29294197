"""Metrics, one family per module: `coco` (OKS AP via pycocotools), `pck`."""
