#!/bin/bash
# Classic zoo architectures exported from PyTorch (Debian python3-torch/torchvision,
# random seeded weights) must match PyTorch's outputs (rtol 1e-3) on Duet's
# reference executor and on the cpu backend. Skips (exit 77) where python3-torch is not installed.
set -euo pipefail
build=$1
duet=$build/duet
zoo=${DUET_ZOO_DIR:-$build/zoo}
py=/usr/bin/python3
if ! $py -c "import torch, torchvision, onnx" 2>/dev/null; then
  echo "SKIP: Debian python3-torch, python3-torchvision and python3-onnx are needed to export the zoo"
  exit 77
fi
src=$(cd "$(dirname "$0")/.." && pwd)
$py "$src/tools/python/make_zoo.py" "$zoo" 2>&1 | grep -v -i warning
"$duet" conform "$zoo" --threads 2 -v
echo "== the same models through the graph optimizer and the oneDNN cpu backend =="
"$duet" conform "$zoo" --threads 2 -v --backend cpu
"$duet" conform "$zoo" --threads 2 --backend cpu --json > "$zoo.cpu.json"
"$duet" conform "$zoo" --threads 2 --json > "$zoo.json"
python3 - "$zoo.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for c in d["cases"]:
    print(f"{c['name']:40s} {c['status']:12s} max|err| {c.get('max_abs_error', 0):.2e}  {c['seconds']:.2f} s")
sys.exit(0 if d["passed"] == d["total"] else 1)
PY
python3 -c "import json, sys; d = json.load(open(sys.argv[1])); sys.exit(0 if d['passed'] == d['total'] else 1)" "$zoo.cpu.json"
