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
