#!/usr/bin/env python3
"""Post-training quantization of the PaddleOCR models, Duet vs ONNX Runtime (a benchmark, not a test).

Renders calibration and held-out evaluation sets (different seeds, so different lines and pages) with
../shared/tools/render_ocr_inputs.py, quantizes each model with `duet quantize` (its defaults, and any
--methods) and with ONNX Runtime's quantize_static (MinMax, Entropy and Percentile on the same calibration
data, per-channel INT8 weights, UINT8 activations, QDQ, the same op types), and judges every model by its
task on the held-out set with `duet evaluate` (one definition of each metric, eval/metrics.h):
  rec: character error rate against the rendered text (spaces ignored: the recognizer drops them)
  cls: top-1 against the rendered orientation (0 / 180)
  det: box F1 after DB post-processing against the rendered line boxes (IoU >= 0.5)
beside FP32's figure on the same samples. QDQ models run as defined (float Q/DQ around float ops), which is
what ONNX Runtime computes with its graph optimizations off. It also checks that ONNX Runtime and Duet
compute the same integers for Duet's QDQ model: every QuantizeLinear output compared, largest difference in LSB.

usage: bench/quant_eval.py [--work DIR] [--duet build/duet] [--models rec,cls,det]
       [--calib N] [--eval N] [--det-calib N] [--det-eval N] [--methods default,auto] [--json]
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
    # The marker names the renderer's content: sets made by an older renderer (its fonts changed) are redone.
    import hashlib
    script = os.path.join(SHARED, 'tools', 'render_ocr_inputs.py')
    version = hashlib.sha1(open(script, 'rb').read()).hexdigest()[:10]
    done = os.path.join(out, f'.done-{kinds}-{count}-{version}')
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

    calibrate_method = {'minmax': CalibrationMethod.MinMax, 'entropy': CalibrationMethod.Entropy,
                        'percentile': CalibrationMethod.Percentile}[method]
    quantize_static(pre, out, Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=OP_TYPES, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=calibrate_method)


def task_metric(kind):
    keys = os.path.join(SHARED, 'models', 'paddleocr', 'ppocr_keys_v1.txt')
    return {'rec': f'cer,keys={keys},spaces=ignore', 'cls': 'top1,labels=0,180', 'det': 'boxes'}[kind]


def evaluate(duet, model, reference, data, kind):
    """`duet evaluate`: the model's task metric on the held-out samples, and FP32's beside it."""
    r = subprocess.run([duet, 'evaluate', model, '--data', data, '--reference', reference, '--metric', task_metric(kind),
                        '--json'], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f'duet evaluate {model}: {r.stderr.strip()}')
    j = json.loads(r.stdout)
    return {'metric': j['description'], 'value_pct': round(100 * j['value'], 3),
            'fp32_pct': round(100 * j['reference']['value'], 3), 'drop_points': round(j['reference']['drop_points'], 3),
            'rel_l2': round(j['reference']['rel_l2'], 4), 'samples': j['samples']}


def quantized_share(model):
    import onnx
    m = onnx.load(model)
    dq_inputs = {n.output[0] for n in m.graph.node if n.op_type == 'DequantizeLinear'}
    matrix = [n for n in m.graph.node if n.op_type in OP_TYPES]
    return sum(any(i in dq_inputs for i in n.input) for n in matrix), len(matrix)


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
    ap.add_argument('--det-eval', type=int, default=40)
    ap.add_argument('--methods', default='default', help='Duet methods to run ("default": no --method flag)')
    ap.add_argument('--ort-methods', default='minmax,entropy,percentile', help='ONNX Runtime quantize_static methods ("" for none)')
    ap.add_argument('--duet-args', default='', help='extra arguments for duet quantize, e.g. "--max-accuracy-drop 0.5"')
    ap.add_argument('--json', action='store_true')
    a = ap.parse_args()
    ensure_python_deps()
    os.makedirs(a.work, exist_ok=True)
    results = {}
    for kind in a.models.split(','):
        ncal, nev = (a.det_calib, a.det_eval) if kind == 'det' else (a.calib, a.eval)
        cal_dir, ev_dir = os.path.join(a.work, 'calib'), os.path.join(a.work, 'eval')
        render(cal_dir, 1234, ncal, kind)
        render(ev_dir, 5678, nev, kind)
        model = os.path.join(SHARED, 'models', 'paddleocr', MODELS[kind])
        held_out = os.path.join(ev_dir, kind)
        res = results[kind] = {'calibration_samples': ncal, 'held_out_samples': nev}
        for method in [m for m in a.methods.split(',') if m]:
            out = os.path.join(a.work, f'{kind}_duet_{method}.onnx')
            t0 = time.time()
            r = subprocess.run([a.duet, 'quantize', model, '--calib', os.path.join(cal_dir, kind), '--max-calib', str(ncal),
                                '-o', out, '--json', '--report', out.replace('.onnx', '.html'), '--metric', task_metric(kind)] +
                               ([] if method == 'default' else ['--method', method]) + a.duet_args.split(),
                               capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(r.stderr)
            rep = json.loads(r.stdout)
            res[f'duet_{method}'] = dict(evaluate(a.duet, out, model, held_out, kind), seconds=round(time.time() - t0, 1),
                                         calib_peak_rss_mb=round(rep['calibration']['peak_rss_mb'], 1),
                                         nodes_quantized=rep['nodes_quantized'], nodes_float=rep['nodes_float'])
        for method in [m for m in a.ort_methods.split(',') if m]:
            out = os.path.join(a.work, f'{kind}_ort_{method}.onnx')
            t0 = time.time()
            calib = load_set(os.path.join(cal_dir, kind))[:ncal]
            ort_quantize(model, out, calib, method, a.work)
            q, n = quantized_share(out)
            res[f'ort_{method}'] = dict(evaluate(a.duet, out, model, held_out, kind), seconds=round(time.time() - t0, 1),
                                        nodes_quantized=q, nodes_float=n - q)
        first = [m for m in a.methods.split(',') if m]
        if first:
            x = load_set(held_out)[0]
            res['ort_vs_duet_integers'] = lsb_check(a.duet, os.path.join(a.work, f'{kind}_duet_{first[0]}.onnx'), x, a.work)
        if not a.json:
            print(kind, json.dumps(res, indent=1), flush=True)
    if a.json:
        print(json.dumps(results, indent=1))


if __name__ == '__main__':
    main()
