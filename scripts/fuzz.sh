#!/bin/bash
# Builds the libFuzzer target with clang and fuzzes the model loader for N seconds
# (default 120), seeded with the bundled model and a few suite models.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-120}
"$root/scripts/install-deps.sh"
# The sanitizer build (scripts/sanitize.sh) already has the fuzz target; else build it alone.
build="$root/build-asan"
if [ ! -x "$build/fuzz/fuzz_model_loader" ]; then
  build="$root/build-fuzz"
  # -O1 with line tables: instrumented builds compile 2-3x faster than -O2 -g and fuzz as well.
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_FLAGS="-O1 -gline-tables-only" -DCMAKE_CXX_COMPILER=clang++ \
    -DDUET_FUZZ=ON -DDUET_TESTS=OFF >/dev/null
  ninja -C "$build" fuzz_model_loader
fi
corpus="$build/corpus"
mkdir -p "$corpus"
cp "$root/data/models/"*.onnx "$corpus/" 2>/dev/null || true
shared="$root/../shared/conformance/onnx-backend/node"
if [ -d "$shared" ]; then
  for t in test_add test_conv_with_strides_padding test_if test_loop11 test_cast_FLOAT_to_FLOAT8E4M3FN test_scan9_sum; do
    [ -f "$shared/$t/model.onnx" ] && cp "$shared/$t/model.onnx" "$corpus/$t.onnx"
  done
fi
"$build/fuzz/fuzz_model_loader" "$corpus" -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=4096 \
  -print_final_stats=1 2>&1 | tail -15
echo "fuzz: ${seconds}s without a crash"
