#!/bin/bash
# Data-parallel training: `mpirun -np 2 duet train` must match one process
# training on the same global batches (loss after 50 steps within 1e-5
# relative), with FP32 and with BF16 gradient traffic (looser: 1e-2).
# Planning: `mpirun -np 2 duet plan` (sensitivity measurements dealt to the
# ranks) must print the same JSON as one process.
# Skips (77) without mpirun, without ../shared, or when duet has no MPI.
set -euo pipefail
build=$1
duet=$build/duet
data=$(cd "$(dirname "$0")/.." && pwd)/../shared/datasets/digits/digits.csv.gz
command -v mpirun >/dev/null || { echo "mpirun is not installed: skipped"; exit 77; }
[ -f "$data" ] || { echo "../shared/datasets/digits is not present: skipped"; exit 77; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_WAIT_POLICY=PASSIVE
args=(train cnn --data "$data" --sample-shape 1x8x8 --scale 0.0625 --max-steps 50 --threads 1 --json)
single=$("$duet" "${args[@]}")
check() {  # $1: mpirun output, $2: tolerance, $3: label
  python3 - "$single" "$1" "$2" "$3" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
tol, label = float(sys.argv[3]), sys.argv[4]
assert b["ranks"] == 2, f"{label}: expected 2 ranks, got {b['ranks']}"
la, lb = a["epochs"][-1]["last_step_loss"], b["epochs"][-1]["last_step_loss"]
rel = abs(la - lb) / abs(la)
print(f"{label}: loss after {a['steps']} steps: 1 process {la:.9f}, 2 ranks {lb:.9f}, relative difference {rel:.2e} (limit {tol:g})")
sys.exit(0 if rel <= tol and a["steps"] == b["steps"] == 50 else 1)
PY
}
if ! out=$(mpirun --oversubscribe -np 2 "$duet" "${args[@]}" 2>&1); then
  if grep -q "built without MPI" <<<"$out"; then echo "duet was built without MPI: skipped"; exit 77; fi
  echo "$out"; exit 1
fi
check "$out" 1e-5 "fp32 all-reduce"
out=$(mpirun --oversubscribe -np 2 "$duet" "${args[@]}" --allreduce bf16)
check "$out" 1e-2 "bf16 all-reduce"
src=$(cd "$(dirname "$0")/.." && pwd)
plan=(plan "$src/data/models/digits_cnn.onnx" --data "$src/data/samples/digits" --metric top1 --device t4,a100 --json)
one=$("$duet" "${plan[@]}")
two=$(mpirun --oversubscribe -np 2 "$duet" "${plan[@]}")
if [ "$one" != "$two" ]; then echo "duet plan: 2 ranks printed a different plan from one process"; diff <(echo "$one") <(echo "$two") | head -20; exit 1; fi
echo "duet plan: 2 ranks print the same JSON as one process ($(wc -c <<<"$one") bytes)"
