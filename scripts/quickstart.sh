#!/bin/bash
# Quick start: install what is missing, build, and run the main job on the
# bundled defaults (data/): plan the bundled digits CNN (duet plan), train the
# digits CNN, run the bundled trained model, then bench / simulate / quantize
# the PaddleOCR text-direction classifier.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
duet="$root/build/duet"
out=$(mktemp -d)
echo; echo "== duet plan: the bundled digits CNN over the device catalog and this CPU =="
echo "   (accuracy measured on held-out samples; catalog latency/cost modelled, this CPU's measured)"
"$duet" plan "$root/data/models/digits_cnn.onnx" --data "$root/data/samples/digits" --metric top1 \
  --max-accuracy-drop 0 --report "$out/plan.html" -o "$out/plan"
echo; echo "== duet train: the digits CNN, BF16 autocast (accuracy and step time measured) =="
"$duet" train cnn --data "$root/data/datasets/digits/digits.csv.gz" --sample-shape 1x8x8 --scale 0.0625 \
  --standardize --amp bf16 -o "$out/digits_cnn.onnx"
echo; echo "== duet run: the bundled default model (trained by duet train) on a sample digit =="
"$duet" run "$root/data/models/digits_cnn.onnx" --input "$root/data/samples/digits/digit_00_label5.npy"
model="$root/data/models/ppocr_cls_mobile_v2.0.onnx"
echo; echo "== duet info (PaddleOCR text-direction classifier) =="
"$duet" info "$model" --shape x=1x3x48x192
for sample in "$root"/data/samples/cls/*.pb; do
  echo; echo "== duet run $(basename "$sample") =="
  "$duet" run "$model" --input "x=$sample" --output-dir "$out/$(basename "$sample" .pb)"
done
echo; echo "== duet bench: oneDNN cpu backend (measured) =="
"$duet" bench "$model" --shape x=1x3x48x192 --threads 2 --runs 50
echo; echo "== duet simulate: the same model on accelerators (modelled) =="
"$duet" simulate "$model" --shape x=1x3x48x192 --device t4,a100,h100,inferentia2,tpu-v4 --batch 1 \
  --auto-cast matmul --report "$out/simulate.html"
echo; echo "== duet quantize: INT8 QDQ model calibrated on the bundled samples (errors measured) =="
"$duet" quantize "$model" --calib "$root/data/samples/cls" -o "$out/cls_int8.onnx" --report "$out/quantize.html"
echo; echo "== duet emulate: the bundled digits model through device datapaths, bit-exact (errors measured) =="
"$duet" emulate "$root/data/models/digits_cnn.onnx" --data "$root/data/samples/digits" --max-samples 16 \
  -d bf16 -d fp16 -d fp8 -d int8 -d int4 -d int8-acc16 --report "$out/emulate.html"
echo; echo "reports: $out/plan.html $out/simulate.html $out/quantize.html $out/emulate.html"
