#!/usr/bin/env python
"""Crop-classifier passes per image for turn settings, on the first N cil24_val images:
python tools/probe_turn_passes.py 12"""

import sys

import torch

import deepacc_d2  # noqa
from deepacc_d2.app.config import setup_cfg
from deepacc_d2.app.model_zoo import resolve_model
from deepacc_d2.data.mapper import build_eval_loader
from deepacc_d2.engine.predictor import load_model

n = int(sys.argv[1])
config_file, weights, opts = resolve_model("cil-r18-crops", None)
cfg = setup_cfg(config_file, opts, weights)
model = load_model(cfg)
look = model.roi_heads.second_look
passes = []
look.classifier.register_forward_hook(lambda m, i, o: passes.append(len(i[0])))
loader = build_eval_loader(cfg, "cil24_val")
inputs = []
for batch in loader:
    inputs += batch
    if len(inputs) >= n:
        break
for turns, margin in [(1, 1.0), (2, 1.0), (4, 0.5), (4, 1.0)]:
    look.turns, look.turns_margin = turns, margin
    passes.clear()
    with torch.no_grad():
        for x in inputs[:n]:
            model([x])
    print(f"turns {turns} margin {margin}: {sum(passes) / n:.1f} crops per image", flush=True)
