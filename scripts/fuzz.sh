#!/bin/bash
# Builds the libFuzzer targets with clang and fuzzes for N seconds in all (default
# 120): half on the model loader (seeded with the bundled model and a few suite
# models; each model that loads goes through shape inference and the cost model), half
# on every other parser a user feeds (fuzz_inputs: .npy, .pb, PNG, JPEG, device TOML,
# topology CSV, format / precision / preprocessing / accumulator specs, training
# checkpoints; seeded with one valid input of each).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-120}
"$root/scripts/install-deps.sh"
# The sanitizer build (scripts/sanitize.sh) already has the fuzz target; else build it alone.
build="$root/build-asan"
if [ ! -x "$build/fuzz/fuzz_model_loader" ] || [ ! -x "$build/fuzz/fuzz_inputs" ]; then
  [ -d "$build" ] && ninja -C "$build" fuzz_model_loader fuzz_inputs >/dev/null 2>&1 || true
fi
if [ ! -x "$build/fuzz/fuzz_model_loader" ] || [ ! -x "$build/fuzz/fuzz_inputs" ]; then
  build="$root/build-fuzz"
  # -O1 with line tables: instrumented builds compile 2-3x faster than -O2 -g and fuzz as well.
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_FLAGS="-O1 -gline-tables-only" -DCMAKE_CXX_COMPILER=clang++ \
    -DDUET_FUZZ=ON -DDUET_TESTS=OFF >/dev/null
  ninja -C "$build" fuzz_model_loader fuzz_inputs
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
half=$(( seconds / 2 ))
"$build/fuzz/fuzz_model_loader" "$corpus" -max_total_time="$half" -max_len=65536 -timeout=10 -rss_limit_mb=4096 \
  -print_final_stats=1 2>&1 | tail -15
# One valid input per parser, behind its selector byte (fuzz/fuzz_inputs.cc).
inputs="$build/corpus_inputs"
mkdir -p "$inputs"
seed() { { printf "\\x$1"; cat; } > "$inputs/seed_$1"; }
python3 -c "
import struct, sys
h = \"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\"
h += ' ' * ((64 - (10 + len(h) + 1) % 64) % 64) + '\\n'
sys.stdout.buffer.write(b'\\x93NUMPY\\x01\\x00' + struct.pack('<H', len(h)) + h.encode() + struct.pack('<6f', *range(6)))" | seed 00
seed 01 < "$root/data/samples/cls/sample_0.pb"
python3 -c "
import struct, sys, zlib
def chunk(t, d): return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
raw = b''.join(b'\\x00' + bytes([x * 40, 80, 200 - x * 40] * 4) for x in range(4))
sys.stdout.buffer.write(b'\\x89PNG\\r\\n\\x1a\\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', 4, 4, 8, 2, 0, 0, 0)) + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))" | seed 02
printf '\xff\xd8\xff\xe0' | seed 03
seed 04 < "$root/devices/t4.toml"
seed 05 < "$root/tests/data/scalesim/resnet18.csv"
printf 'e4m3fn' | seed 06
printf 'int8' | seed 07
printf 'resize=48x320,keep_ratio,pad=right,scale=1/255,mean=0.5:0.5:0.5,std=0.5:0.5:0.5,order=bgr' | seed 08
printf 'hopper:13:32' | seed 09
printf '\x00{"format": "duet-checkpoint-1", "steps": 0, "epoch": 0, "optimizer_steps": 0, "loss_scale": 1.0, "growth_tracker": 0}' | seed 0a
TMPDIR="$build" "$build/fuzz/fuzz_inputs" "$inputs" -max_total_time="$(( seconds - half ))" -max_len=65536 -timeout=10 \
  -rss_limit_mb=4096 -print_final_stats=1 2>&1 | tail -15
echo "fuzz: ${seconds}s without a crash (model loader ${half}s, other parsers $(( seconds - half ))s)"
