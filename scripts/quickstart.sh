#!/bin/bash
# Quick start: install what is missing, build, and run the main job on the
# bundled default model (PaddleOCR text-direction classifier, data/).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
duet="$root/build/duet"
model="$root/data/models/ppocr_cls_mobile_v2.0.onnx"
echo; echo "== duet info (bundled default model) =="
"$duet" info "$model" --shape x=1x3x48x192
out=$(mktemp -d)
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
echo; echo "reports: $out/simulate.html $out/quantize.html"
