#!/usr/bin/env python3
"""Post-training quantization of the PaddleOCR models, Duet vs ONNX Runtime (a benchmark, not a test).

Renders calibration and evaluation text (different seeds, so different lines) with
../shared/tools/render_ocr_inputs.py, quantizes each model with `duet quantize` and with
ONNX Runtime's quantize_static (MinMax and Entropy, the same calibration data, per-channel
INT8 weights, UINT8 activations, QDQ, the same op types), runs every model with ONNX Runtime
on the evaluation data and prints the figures of the PTQ issue:
  rec: CTC greedy decode identical to FP32 (% of lines) and character agreement (1 - edits/chars)
  cls: same class as FP32 (%)
  det: IoU of the probability maps thresholded at 0.3, FP32 vs quantized (mean over pages)
Accuracy is measured with ONNX Runtime's graph optimizations off (QDQ executed as defined, which is
what Duet computes); the figures under 'ort_int_kernels' use ONNX Runtime's fused U8S8 kernels, which
saturate on x86 CPUs without VNNI (see run_ort). It also checks that ONNX Runtime and Duet compute the
same integers for Duet's QDQ model: every QuantizeLinear output compared, largest difference in LSB.

usage: bench/quant_eval.py [--work DIR] [--duet build/duet] [--models rec,cls,det]
       [--calib N] [--eval N] [--det-calib N] [--det-eval N]
"""
import argparse, json, os, subprocess, sys, time
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, '..', 'shared')
MODELS = {
    'det': 'ch_PP-OCRv4_det_infer.onnx',
    'rec': 'ch_PP-OCRv4_rec_infer.onnx',
    'cls': 'ch_ppocr_mobile_v2.0_cls_infer.onnx',
}
OP_TYPES = ['Conv', 'ConvTranspose', 'MatMul', 'Gemm']


def ensure_python_deps():
    try:
        import onnx, onnxruntime  # noqa: F401
    except ImportError:
        print('installing onnx and onnxruntime from PyPI (benchmark peers)', file=sys.stderr)
        subprocess.check_call([sys.executable, '-m', 'pip', 'install', '-q', '--break-system-packages', 'onnx', 'onnxruntime'])


def render(out, seed, count, kinds):
    done = os.path.join(out, f'.done-{kinds}-{count}')
    if os.path.exists(done):
        return
    env = dict(os.environ, KINDS=kinds)
    subprocess.check_call([sys.executable, os.path.join(SHARED, 'tools', 'render_ocr_inputs.py'), out, str(seed), str(count)], env=env)
    open(done, 'w').close()


def load_set(folder):
    import onnx
    from onnx import numpy_helper
    sets = sorted((d for d in os.listdir(folder) if d.startswith('test_data_set_')), key=lambda d: int(d.split('_')[-1]))
    return [numpy_helper.to_array(onnx.load_tensor(os.path.join(folder, d, 'input_0.pb'))) for d in sets]


def ort_quantize(model, out, calib, method, work):
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process
    up = os.path.join(work, os.path.basename(model).replace('.onnx', '.opset13.onnx'))
    pre = up.replace('.onnx', '.pre.onnx')
    if not os.path.exists(pre):
        onnx.save(version_converter.convert_version(onnx.load(model), 13), up)
        try:
            quant_pre_process(up, pre)
        except Exception as e:  # keep going with the converted model
            print(f'quant_pre_process failed ({e}); using the converted model', file=sys.stderr)
            pre = up
    name = onnx.load(pre).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {name: x}

    quantize_static(pre, out, Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=OP_TYPES, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.Entropy if method == 'entropy' else CalibrationMethod.MinMax)


def run_ort(model, inputs, exact=False):
    """exact: graph optimizations off, so QDQ runs as its definition (float Q/DQ around float ops).
    With them on, ONNX Runtime fuses QDQ into U8S8 integer kernels, which on x86 without VNNI use
    VPMADDUBSW and can saturate (ONNX Runtime's documentation advises reduce_range or U8U8 there)."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    if exact:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(model, so, providers=['CPUExecutionProvider'])
    name = s.get_inputs()[0].name
    return [s.run(None, {name: x})[0] for x in inputs]


def run_duet_bf16(duet, model, inputs, work):
    """The FP32 model on Duet's cpu backend with --precision bf16 (Conv/MatMul inputs and weights in BF16,
    FP32 accumulation), one `duet run` per input (.npy in, .npy out)."""
    outs = []
    folder = os.path.join(work, 'bf16_run')
    os.makedirs(folder, exist_ok=True)
    for i, x in enumerate(inputs):
        src, out = os.path.join(folder, f'in_{i}.npy'), os.path.join(folder, f'out_{i}')
        np.save(src, x)
        subprocess.run([duet, 'run', model, '--input', 'x=' + src, '--backend', 'cpu', '--precision', 'bf16',
                        '--threads', '2', '--output-dir', out], check=True, capture_output=True)
        outs.append(np.load(os.path.join(out, sorted(os.listdir(out))[0])))
    return outs


def ctc_decode(prob, keys):
    idx = prob[0].argmax(-1)
    out, prev = [], -1
    for i in idx:
        if i != prev and i != 0:
            out.append(keys[i - 1] if i - 1 < len(keys) else ' ')
        prev = i
    return ''.join(out)


def edit_distance(a, b):
    d = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, d[0] = d[0], i
        for j, cb in enumerate(b, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (ca != cb))
    return d[len(b)]


def metrics(kind, ref, got, keys):
    if kind == 'rec':
        a = [ctc_decode(r, keys) for r in ref]
        b = [ctc_decode(g, keys) for g in got]
        same = sum(x == y for x, y in zip(a, b))
        edits = sum(edit_distance(x, y) for x, y in zip(a, b))
        chars = sum(max(len(x), 1) for x in a)
        return {'decode_identical_pct': 100.0 * same / len(a), 'char_agreement_pct': 100.0 * (1 - edits / chars), 'lines': len(a)}
    if kind == 'cls':
        same = sum(int(r.argmax() == g.argmax()) for r, g in zip(ref, got))
        return {'same_class_pct': 100.0 * same / len(ref), 'samples': len(ref)}
    ious = []
    for r, g in zip(ref, got):
        a, b = r > 0.3, g > 0.3
        union = np.logical_or(a, b).sum()
        ious.append(1.0 if union == 0 else np.logical_and(a, b).sum() / union)
    return {'iou_mean': float(np.mean(ious)), 'iou_min': float(np.min(ious)), 'pages': len(ious)}


def lsb_check(duet, model, x, work):
    """ONNX Runtime vs Duet on every QuantizeLinear output of `model` for one input: max |difference| in LSB."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper
    m = onnx.load(model)
    graph_outputs = [o.name for o in m.graph.output]
    names = [n.output[0] for n in m.graph.node if n.op_type == 'QuantizeLinear']
    have = {o.name for o in m.graph.output}
    for n in names:
        if n not in have:
            m.graph.output.append(onnx.helper.make_empty_tensor_value_info(n))
    exposed = os.path.join(work, 'lsb_' + os.path.basename(model))
    onnx.save(m, exposed)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(exposed, so, providers=['CPUExecutionProvider'])
    feed = os.path.join(work, 'lsb_input.pb')
    open(feed, 'wb').write(numpy_helper.from_array(x, s.get_inputs()[0].name).SerializeToString())
    ort_out = dict(zip([o.name for o in s.get_outputs()], s.run(None, {s.get_inputs()[0].name: x})))
    out_dir = os.path.join(work, 'lsb_out')
    os.makedirs(out_dir, exist_ok=True)
    subprocess.check_call([duet, 'run', exposed, '-i', feed, '-o', out_dir], stdout=subprocess.DEVNULL)
    worst, over, total, first_over = 0, 0, 0, None
    for n in names:
        path = os.path.join(out_dir, n.replace('/', '_') + '.pb')
        if not os.path.exists(path):
            continue
        d = numpy_helper.to_array(onnx.load_tensor(path)).astype(np.int64)
        diff = np.abs(d - ort_out[n].astype(np.int64))
        worst = max(worst, int(diff.max()))
        over += int((diff > 1).sum())
        total += diff.size
        if first_over is None and diff.max() > 1:
            first_over = n
    outs = {}
    for name in graph_outputs:
        path = os.path.join(out_dir, name.replace('/', '_') + '.pb')
        if os.path.exists(path):
            outs[name] = float(np.abs(numpy_helper.to_array(onnx.load_tensor(path)) - ort_out[name]).max())
    # Elements of each quantized tensor differ where a float sum lands next to a rounding
    # boundary (summation order differs); one flipped LSB then propagates downstream.
    return {'quantized_tensors': len(names), 'elements': total, 'max_lsb': worst,
            'elements_over_1_lsb_pct': 100.0 * over / max(total, 1), 'first_tensor_over_1_lsb': first_over,
            'output_max_abs_diff': outs}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--work', default='/tmp/duet-quant-eval')
    ap.add_argument('--duet', default=os.path.join(ROOT, 'build', 'duet'))
    ap.add_argument('--models', default='rec,cls,det')
    ap.add_argument('--calib', type=int, default=100)
    ap.add_argument('--eval', type=int, default=200)
    ap.add_argument('--det-calib', type=int, default=16)
    ap.add_argument('--det-eval', type=int, default=20)
    ap.add_argument('--methods', default='entropy,mse', help='Duet methods to run')
    ap.add_argument('--skip-ort', action='store_true', help='leave out ONNX Runtime quantize_static')
    ap.add_argument('--duet-args', default='', help='extra arguments for duet quantize, e.g. "--accuracy-budget 0.03"')
    ap.add_argument('--bf16-baseline', action='store_true',
                    help='also run the FP32 model with `duet run --backend cpu --precision bf16` on the evaluation '
                         'data: how far the same metrics move under BF16, the format accelerators treat as safe')
    ap.add_argument('--json', action='store_true')
    a = ap.parse_args()
    ensure_python_deps()
    os.makedirs(a.work, exist_ok=True)
    keys = [l.rstrip('\n') for l in open(os.path.join(SHARED, 'models', 'paddleocr', 'ppocr_keys_v1.txt'), encoding='utf-8')]
    results = {}
    for kind in a.models.split(','):
        ncal, nev = (a.det_calib, a.det_eval) if kind == 'det' else (a.calib, a.eval)
        cal_dir, ev_dir = os.path.join(a.work, 'calib'), os.path.join(a.work, 'eval')
        render(cal_dir, 1234, ncal, kind)
        render(ev_dir, 5678, nev, kind)
        model = os.path.join(SHARED, 'models', 'paddleocr', MODELS[kind])
        calib, evals = load_set(os.path.join(cal_dir, kind))[:ncal], load_set(os.path.join(ev_dir, kind))[:nev]
        ref = run_ort(model, evals)
        res = results[kind] = {'calibration_samples': len(calib), 'evaluation_samples': len(evals)}
        if a.bf16_baseline:
            res['duet_bf16_precision'] = metrics(kind, ref, run_duet_bf16(a.duet, model, evals, a.work), keys)
        for method in [m for m in a.methods.split(',') if m]:
            out = os.path.join(a.work, f'{kind}_duet_{method}.onnx')
            t0 = time.time()
            r = subprocess.run([a.duet, 'quantize', model, '--calib', os.path.join(cal_dir, kind), '--max-calib', str(ncal),
                                '--method', method, '-o', out, '--json'] + ([] if '--max-eval' in a.duet_args else ['--max-eval', '4']) + [
                                '--report', out.replace('.onnx', '.html')] + a.duet_args.split(), capture_output=True, text=True)
            if r.returncode != 0:
                print(r.stderr, file=sys.stderr)
                sys.exit(1)
            rep = json.loads(r.stdout)
            res[f'duet_{method}'] = dict(metrics(kind, ref, run_ort(out, evals, exact=True), keys), seconds=round(time.time() - t0, 1),
                                         calib_peak_rss_mb=rep['calibration']['peak_rss_mb'],
                                         nodes_quantized=rep['nodes_quantized'], nodes_float=rep['nodes_float'])
            res[f'duet_{method}']['ort_int_kernels'] = metrics(kind, ref, run_ort(out, evals), keys)
        for method in ([] if a.skip_ort else ['minmax', 'entropy']):
            out = os.path.join(a.work, f'{kind}_ort_{method}.onnx')
            t0 = time.time()
            ort_quantize(model, out, calib, method, a.work)
            res[f'ort_{method}'] = dict(metrics(kind, ref, run_ort(out, evals, exact=True), keys), seconds=round(time.time() - t0, 1))
            res[f'ort_{method}']['ort_int_kernels'] = metrics(kind, ref, run_ort(out, evals), keys)
        first = a.methods.split(',')[0]
        if first:  # --methods "" with --bf16-baseline: no Duet QDQ model to compare
            res['ort_vs_duet_integers'] = lsb_check(a.duet, os.path.join(a.work, f'{kind}_duet_{first}.onnx'), evals[0], a.work)
        if not a.json:
            print(kind, json.dumps(res, indent=1), flush=True)
    if a.json:
        print(json.dumps(results, indent=1))


if __name__ == '__main__':
    main()
