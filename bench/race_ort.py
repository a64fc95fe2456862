#!/usr/bin/env python3
"""Race Duet against ONNX Runtime on the same models, inputs, thread count and
machine, alternating between the two so both see the same machine load.

Prints, per model: median latency of each (measured), the ratio Duet/ORT
(< 1 means Duet is faster) and peak RSS of each process. A benchmark, not a
test. Usage:
  bench/race_ort.py [--duet build/duet] [--threads 2] [--rounds 5] [--runs 10] [--json]
Needs onnxruntime (pip; installed on demand) and ../shared/models/paddleocr.
"""
import argparse, json, os, statistics, subprocess, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("DUET_SHARED", os.path.join(os.path.dirname(ROOT), "shared"))
MODELS = [  # name, file, input shape
    ("det", "models/paddleocr/ch_PP-OCRv4_det_infer.onnx", (1, 3, 640, 640)),
    ("rec", "models/paddleocr/ch_PP-OCRv4_rec_infer.onnx", (1, 3, 48, 320)),
    ("cls", "models/paddleocr/ch_ppocr_mobile_v2.0_cls_infer.onnx", (1, 3, 48, 192)),
]

ORT_RUNNER = r"""
import json, resource, sys, time
import numpy as np, onnxruntime as ort
model, shape, threads, runs = sys.argv[1], tuple(map(int, sys.argv[2].split('x'))), int(sys.argv[3]), int(sys.argv[4])
so = ort.SessionOptions(); so.intra_op_num_threads = threads; so.inter_op_num_threads = 1
s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
x = np.random.default_rng(42).random(shape, dtype=np.float32)
name = s.get_inputs()[0].name
for _ in range(3): s.run(None, {name: x})
ms = []
for _ in range(runs):
    t = time.perf_counter(); s.run(None, {name: x}); ms.append((time.perf_counter() - t) * 1e3)
ms.sort()
# VmHWM, not ru_maxrss: the latter survives fork/exec and would report this driver's parent.
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"median_ms": ms[len(ms) // 2], "peak_rss_mb": hwm / 1024}))
"""


def ensure_ort():
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "onnxruntime", "numpy"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duet", default=os.path.join(ROOT, "build", "duet"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5, help="alternations per model; medians over rounds")
    ap.add_argument("--runs", type=int, default=10, help="timed runs per round")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--zoo", help="also race zoo models from this folder (tests/zoo_test.sh makes them: build/zoo)")
    ap.add_argument("--models", default="det,rec,cls,resnet18,mobilenet_v2",
                    help="which models, comma-separated ('all': the PaddleOCR three and every zoo model)")
    a = ap.parse_args()
    if not os.path.isdir(SHARED):
        sys.exit(f"race_ort: {SHARED} is not present (the PaddleOCR models live there)")
    ensure_ort()
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(ORT_RUNNER)
        runner = f.name
    import onnxruntime
    models = [(name, os.path.join(SHARED, rel), shape) for name, rel, shape in MODELS]
    if a.zoo:  # every image model tools/python/make_zoo.py made (the token-input encoder is timed by duet bench alone)
        for folder in sorted(os.listdir(a.zoo)):
            name = folder[len("test_zoo_"):]
            if folder.startswith("test_zoo_") and name != "transformer_encoder":
                side = 299 if name == "inception_v3" else 224
                models.append((name, os.path.join(a.zoo, folder, "model.onnx"), (1, 3, side, side)))
    wanted = set(a.models.split(","))
    results = []
    for name, model, shape in models:
        if ("all" not in wanted and name not in wanted) or not os.path.exists(model):
            continue
        dims = "x".join(map(str, shape))
        input_name = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"]).get_inputs()[0].name
        duet, ort = [], []
        for r in range(a.rounds):
            out = subprocess.check_output([a.duet, "bench", model, "--shape", f"{input_name}={dims}", "--threads", str(a.threads),
                                           "--runs", str(a.runs), "--json"])
            duet.append(json.loads(out))
            out = subprocess.check_output([sys.executable, runner, model, dims, str(a.threads), str(a.runs)])
            ort.append(json.loads(out))
        d = statistics.median(x["median_ms"] for x in duet)
        o = statistics.median(x["median_ms"] for x in ort)
        results.append({"model": name, "shape": dims, "threads": a.threads, "duet_median_ms": d, "ort_median_ms": o,
                        "ratio_duet_over_ort": d / o, "duet_peak_rss_mb": max(x["peak_rss_mb"] for x in duet),
                        "ort_peak_rss_mb": max(x["peak_rss_mb"] for x in ort), "measured": True})
    os.unlink(runner)
    if a.json:
        print(json.dumps(results, indent=2))
        return
    print(f"Duet (cpu backend) vs ONNX Runtime, {a.threads} threads, medians of {a.rounds} alternating rounds "
          f"x {a.runs} runs (measured)")
    print(f"{'model':6} {'shape':14} {'duet ms':>9} {'ort ms':>9} {'duet/ort':>9} {'duet RSS MB':>12} {'ort RSS MB':>11}")
    for r in results:
        print(f"{r['model']:6} {r['shape']:14} {r['duet_median_ms']:9.2f} {r['ort_median_ms']:9.2f} "
              f"{r['ratio_duet_over_ort']:9.2f} {r['duet_peak_rss_mb']:12.1f} {r['ort_peak_rss_mb']:11.1f}")


if __name__ == "__main__":
    main()
