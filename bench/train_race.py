#!/usr/bin/env python3
"""Duet vs PyTorch (Debian's python3-torch, CPU) training the digits CNN side by side.

Same data split and per-epoch batch order (Duet's splitmix64 Fisher-Yates,
reimplemented here), same architecture (conv3x3x32 -> relu -> conv3x3x64 ->
relu -> maxpool2 -> fc128 -> relu -> fc10), AdamW lr 1e-3 wd 0.01, batch 64,
same thread count. Prints test accuracy and the median step time of each
(measured), and Duet/PyTorch ratios. Usage:
  /usr/bin/python3 bench/train_race.py --duet build/duet [--epochs 15] [--amp off|bf16|fp16] [--threads 2]
      [--rounds 3] [--seeds 0,1,2] [--same-init /tmp/init.onnx]
Each round runs Duet then PyTorch; with several rounds or seeds the medians
are reported (the machine is shared and noisy).
"""
import argparse, gzip, json, statistics, subprocess, sys, time
from pathlib import Path

M = (1 << 64) - 1


def splitmix(state):
    state = (state + 0x9E3779B97F4A7C15) & M
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
    return state, z ^ (z >> 31)


def permutation(n, seed, stream=0):
    p = list(range(n))
    state = (seed * 0xD1B54A32D192ED03 + stream) & M
    for i in range(n - 1, 0, -1):
        state, r = splitmix(state)
        j = r % (i + 1)
        p[i], p[j] = p[j], p[i]
    return p


def load_digits(path):
    rows = [list(map(float, l.split(","))) for l in gzip.open(path, "rt") if l.strip()]
    return [r[:-1] for r in rows], [int(r[-1]) for r in rows]


def torch_run(args, x, y):
    import torch
    import torch.nn as nn
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    n = len(y)
    p = permutation(n, args.seed, 0x5EED)
    n_test = int(n * 0.2 + 0.5)
    tr, te = p[: n - n_test], p[n - n_test:]
    X = torch.tensor(x, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16
    Y = torch.tensor(y, dtype=torch.int64)
    model = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
    if args.same_init:  # Duet's initial weights, in PyTorch's parameter order
        import onnx
        from onnx import numpy_helper
        inits = [numpy_helper.to_array(t) for t in onnx.load(args.same_init).graph.initializer]
        with torch.no_grad():
            for p_, w in zip(model.parameters(), inits):
                p_.copy_(torch.from_numpy(w.copy()).reshape(p_.shape))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp)
    times, losses = [], []
    for epoch in range(args.epochs):
        order = permutation(len(tr), args.seed, epoch)
        for b in range(0, len(tr), args.batch):
            idx = torch.tensor([tr[k] for k in order[b:b + args.batch]])
            xb, yb = X[idx], Y[idx]
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
                loss = nn.functional.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            times.append((time.perf_counter() - t0) * 1000)
            losses.append(loss.item())
    with torch.no_grad():
        te_idx = torch.tensor(te)
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            acc = (model(X[te_idx]).argmax(1) == Y[te_idx]).float().mean().item()
    per_epoch = (len(tr) + args.batch - 1) // args.batch
    return acc, statistics.median(times), statistics.mean(losses[-per_epoch:])


def duet_run(args):
    cmd = [args.duet, "train", "cnn", "--data", str(args.data), "--sample-shape", "1x8x8", "--scale", "0.0625",
           "--epochs", str(args.epochs), "--batch", str(args.batch), "--amp", args.amp, "--threads", str(args.threads),
           "--seed", str(args.seed), "--backend", args.backend, "--json"]
    if args.same_init:
        cmd += ["--save-init", args.same_init]
    out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    step_ms = statistics.median(e["measured_ms_per_step_median"] for e in out["epochs"])
    return out["test_accuracy"], step_ms, out["epochs"][-1]["train_loss"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duet", default="build/duet")
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/datasets/digits/digits.csv.gz"))
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--amp", default="off", choices=["off", "bf16", "fp16"])
    ap.add_argument("--seeds", default="0", help="comma-separated seeds (split, order, initialization)")
    ap.add_argument("--rounds", type=int, default=1, help="repeats per seed (step-time medians)")
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--skip-torch", action="store_true")
    ap.add_argument("--same-init", metavar="PATH", help="PyTorch starts from Duet's initial weights (written to PATH)")
    args = ap.parse_args()
    x, y = load_digits(args.data)
    rows = []
    for seed in [int(v) for v in args.seeds.split(",")]:
        args.seed = seed
        for r in range(args.rounds):
            d_acc, d_ms, d_loss = duet_run(args)
            print(f"seed {seed} round {r}: duet    amp {args.amp:4s}: test accuracy {100 * d_acc:.2f}%  "
                  f"last-epoch loss {d_loss:.4f}  step {d_ms:.2f} ms (measured median)", flush=True)
            if args.skip_torch:
                rows.append((d_acc, d_ms, None, None))
                continue
            t_acc, t_ms, t_loss = torch_run(args, x, y)
            print(f"seed {seed} round {r}: pytorch amp {args.amp:4s}: test accuracy {100 * t_acc:.2f}%  "
                  f"last-epoch loss {t_loss:.4f}  step {t_ms:.2f} ms (measured median)", flush=True)
            rows.append((d_acc, d_ms, t_acc, t_ms))
    med = lambda k: statistics.median(r[k] for r in rows)
    mean = lambda k: statistics.mean(r[k] for r in rows)
    print(f"duet:    mean test accuracy {100 * mean(0):.2f}%  median step {med(1):.2f} ms ({len(rows)} runs)")
    if not args.skip_torch:
        print(f"pytorch: mean test accuracy {100 * mean(2):.2f}%  median step {med(3):.2f} ms ({len(rows)} runs)")
        print(f"duet/pytorch median step time: {med(1) / med(3):.2f}x   mean accuracy difference: "
              f"{100 * (mean(0) - mean(2)):+.2f} points")


if __name__ == "__main__":
    sys.exit(main())
