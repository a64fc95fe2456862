#!/usr/bin/env python3
"""Writes a QDQ INT8 model (QuantizeLinear/DequantizeLinear around the float
ops) with ONNX Runtime's quantize_static, calibrated on .pb input tensors: the
kind of model Duet's INT8 path (passes::fuse_qdq, the cpu backend's
QuantizedConv) runs. Used for benchmarks; the model is not committed.

Steps: the input shape is fixed (--shape), the opset raised to 13 (ONNX Runtime
rejects per-channel DequantizeLinear below 13), quant_pre_process folds
BatchNorm and constants, then quantize_static: QDQ format, u8 activations
(asymmetric), s8 weights per output channel, MinMax calibration.

Weights are quantized to 7 bits (reduce_range) unless --full-range: on CPUs
without VNNI, u8 x s8 products go through vpmaddubsw, whose s16 pair sums
saturate for |w| > 64, and Duet then runs those convolutions in float.

usage: make_qdq.py MODEL OUT --data 'DIR/test_data_set_*/input_0.pb' [--shape 1x3x640x640] [--full-range]
"""
import argparse
import glob
import os
import sys
import tempfile

import onnx
from onnx import numpy_helper, version_converter
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process


class TensorFiles(CalibrationDataReader):
    """Feeds each .pb tensor file once, as the model's only input."""

    def __init__(self, input_name, paths):
        self.input_name = input_name
        self.paths = list(paths)

    def get_next(self):
        if not self.paths:
            return None
        tensor = onnx.TensorProto()
        with open(self.paths.pop(0), "rb") as f:
            tensor.ParseFromString(f.read())
        return {self.input_name: numpy_helper.to_array(tensor)}


def fix_input_shape(model, dims):
    shape = model.graph.input[0].type.tensor_type.shape
    if len(shape.dim) != len(dims):
        sys.exit(f"--shape has {len(dims)} dims, input '{model.graph.input[0].name}' has {len(shape.dim)}")
    for d, v in zip(shape.dim, dims):
        d.Clear()
        d.dim_value = v


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--data", required=True, help="glob of .pb input tensors for calibration")
    ap.add_argument("--shape", help="static input shape, e.g. 1x3x640x640")
    ap.add_argument("--full-range", action="store_true", help="8-bit weights (default: 7-bit, reduce_range)")
    args = ap.parse_args()

    paths = sorted(glob.glob(args.data))
    if not paths:
        sys.exit(f"no calibration tensors match {args.data}")
    model = onnx.load(args.model)
    if args.shape:
        fix_input_shape(model, [int(v) for v in args.shape.split("x")])
    if next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) < 13:
        model = version_converter.convert_version(model, 13)
    with tempfile.TemporaryDirectory() as tmp:
        upgraded = os.path.join(tmp, "upgraded.onnx")
        prepared = os.path.join(tmp, "prepared.onnx")
        onnx.save(model, upgraded)
        quant_pre_process(upgraded, prepared)
        quantize_static(prepared, args.out, TensorFiles(model.graph.input[0].name, paths),
                        quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, per_channel=True, reduce_range=not args.full_range,
                        calibrate_method=CalibrationMethod.MinMax)
    print(f"{args.out}: calibrated on {len(paths)} inputs, {'8' if args.full_range else '7'}-bit weights")


if __name__ == "__main__":
    main()
