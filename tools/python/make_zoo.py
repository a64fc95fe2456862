#!/usr/bin/env python3
"""Exports classic zoo architectures from PyTorch (Debian python3-torch and
python3-torchvision; random weights, seeded) into ONNX backend-test folders:
OUT/<name>/model.onnx + test_data_set_0/{input_0.pb,output_0.pb}, the expected
output computed by PyTorch (and checked against ONNX Runtime when installed).
`duet conform OUT` then checks Duet against them.

usage: make_zoo.py OUT [--only NAME,NAME]
"""
import argparse
import os
import sys

import numpy as np
import torch
import torchvision
from onnx import numpy_helper


class TinyEncoder(torch.nn.Module):
    """A small transformer encoder (2 layers, d_model 64, 4 heads) over token ids."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(100, 64)
        layer = torch.nn.TransformerEncoderLayer(64, 4, dim_feedforward=128, dropout=0.0, batch_first=True,
                                                 activation="gelu")
        self.encoder = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = torch.nn.Linear(64, 10)

    def forward(self, x):
        return self.head(self.encoder(self.embed(x)).mean(dim=1))


def zoo():
    tv = torchvision.models
    image = lambda size=224: torch.randn(1, 3, size, size)
    return {
        "alexnet": (lambda: tv.alexnet(), image),
        "vgg11": (lambda: tv.vgg11(), image),
        "resnet18": (lambda: tv.resnet18(), image),
        "resnet50": (lambda: tv.resnet50(), image),
        "inception_v3": (lambda: tv.inception_v3(aux_logits=False, init_weights=True), lambda: image(299)),
        "densenet121": (lambda: tv.densenet121(), image),
        "shufflenet_v2_x1_0": (lambda: tv.shufflenet_v2_x1_0(), image),
        "squeezenet1_1": (lambda: tv.squeezenet1_1(), image),
        "mobilenet_v2": (lambda: tv.mobilenet_v2(), image),
        "mobilenet_v3_small": (lambda: tv.mobilenet_v3_small(), image),
        "efficientnet_b0": (lambda: tv.efficientnet_b0(), image),
        "regnet_y_400mf": (lambda: tv.regnet_y_400mf(), image),
        "transformer_encoder": (TinyEncoder, lambda: torch.randint(0, 100, (2, 16))),
    }


def calibrate_batchnorm(model, make_input):
    """Random weights explode or vanish through deep nets (inception_v3's logits
    reach 1e12, efficientnet's 1e-14), which makes any comparison meaningless.
    Set every BatchNorm's running statistics from a few random batches, as a
    trained network's would be, so activations keep a sane scale."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    model.train()
    with torch.no_grad():
        for _ in range(4):
            model(torch.cat([make_input() for _ in range(4)]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--only", default="")
    ap.add_argument("--opset", type=int, default=13)
    args = ap.parse_args()
    only = set(filter(None, args.only.split(",")))
    try:
        import onnxruntime as ort
    except ImportError:
        ort = None
    for name, (make, make_input) in zoo().items():
        if only and name not in only:
            continue
        case = os.path.join(args.out, "test_zoo_" + name)
        data = os.path.join(case, "test_data_set_0")
        if os.path.exists(os.path.join(data, "output_0.pb")):
            print(f"{name}: exists")
            continue
        os.makedirs(data, exist_ok=True)
        torch.manual_seed(0)
        model = make()
        x = make_input()
        calibrate_batchnorm(model, make_input)
        model.eval()
        with torch.no_grad():
            y = model(x)
        path = os.path.join(case, "model.onnx")
        torch.onnx.export(model, (x,), path, opset_version=args.opset, input_names=["input"], output_names=["output"],
                          do_constant_folding=True)
        with open(os.path.join(data, "input_0.pb"), "wb") as f:
            f.write(numpy_helper.from_array(x.numpy(), "input").SerializeToString())
        with open(os.path.join(data, "output_0.pb"), "wb") as f:
            f.write(numpy_helper.from_array(y.numpy(), "output").SerializeToString())
        # Tolerance: rtol 1e-3 as the suite, with an atol at 1e-4 of the output's
        # scale so that elements that cancel to near zero compare meaningfully.
        with open(os.path.join(case, "tolerance.json"), "w") as f:
            f.write('{"rtol": 1e-3, "atol": %.3e}\n' % (1e-4 * float(np.abs(y.numpy()).max())))
        note = ""
        if ort is not None:
            sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            ref = sess.run(None, {"input": x.numpy()})[0]
            note = f", ONNX Runtime max |diff| vs PyTorch {np.abs(ref - y.numpy()).max():.2e}"
        print(f"{name}: exported ({os.path.getsize(path) / 1e6:.1f} MB{note})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
