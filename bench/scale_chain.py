#!/usr/bin/env python3
"""Plan building at scale: a chain of N elementwise nodes (Relu/Sigmoid) built and run once
by `duet run` on the cpu backend against the reference executor, alternating, median of
--repeats runs each (measured, wall time of the whole command: load, prepare, build, run).

    python3 bench/scale_chain.py [--nodes 100000] [--repeats 3] [--duet build/duet]

Issue 17's target: the cpu backend within 3x the reference executor's time."""
import argparse, os, statistics, subprocess, sys, tempfile, time

import numpy as np
import onnx
from onnx import TensorProto, helper


def chain(n, path):
    nodes, prev = [], "x"
    for i in range(n):
        out = "y" if i == n - 1 else f"v{i}"
        nodes.append(helper.make_node("Relu" if i % 2 == 0 else "Sigmoid", [prev], [out], name=f"n{i}"))
        prev = out
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=100000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--duet", default=os.path.join(os.path.dirname(__file__), "..", "build", "duet"))
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        model, x = os.path.join(d, "chain.onnx"), os.path.join(d, "x.npy")
        chain(a.nodes, model)
        np.save(x, np.ones((1, 16), np.float32))
        times = {"reference": [], "cpu": []}
        for r in range(a.repeats):
            for backend in ("reference", "cpu"):
                t0 = time.perf_counter()
                p = subprocess.run([a.duet, "run", model, "--backend", backend, "--input", f"x={x}"], capture_output=True, text=True)
                times[backend].append(time.perf_counter() - t0)
                if p.returncode:
                    sys.exit(f"{backend}: {p.stdout}{p.stderr}")
                print(f"  run {r + 1} {backend:9s} {times[backend][-1]:.2f} s", file=sys.stderr)
    ref, cpu = statistics.median(times["reference"]), statistics.median(times["cpu"])
    print(f"{a.nodes}-node chain, load + build + one run (measured, median of {a.repeats}): reference {ref:.2f} s, "
          f"cpu backend {cpu:.2f} s, ratio {cpu / ref:.2f}x (target <= 3x)")


if __name__ == "__main__":
    main()
