#!/usr/bin/env python3
"""Regenerates tests/data/scalesim/expected_cycles.csv: SCALE-Sim v2's compute cycles, mapping
efficiency and compute utilization for every layer of the topologies in tests/data/scalesim/, on
8x8, 32x32 and 128x128 arrays, for the os, ws and is dataflows.

SCALE-Sim is used as a tool (pip install scalesim==2.0.2); none of its code is part of Duet.

Two ways of asking it, both SCALE-Sim's own code:
  - "full":    the whole simulator (scalesim.scale_sim.scalesim, InterfaceBandwidth CALC, 64 kB SRAMs)
               and its COMPUTE_REPORT.csv; compute cycles = Total Cycles - Stall Cycles.
               Its memory model walks every cycle in Python (~2,000 cycles/s), so whole-network
               sweeps at 8x8 would take hours; --full-max-cycles bounds which cases run this way.
  - "compute": SCALE-Sim's compute model alone (operand_matrix + systolic_compute_{os,ws,is}):
               the demand matrices it hands to the memory system have one row per cycle, and the
               memory system reports the last row's cycle, so compute cycles = rows - 1 when nothing
               stalls. Every case run "full" is also run this way and the two must agree (checked).

Usage: python3 tools/python/scalesim_expected.py [--full-max-cycles 60000] [--out PATH]
"""
import argparse
import csv
import os
import sys
import tempfile
import time

import numpy as np

from scalesim.compute.operand_matrix import operand_matrix
from scalesim.compute.systolic_compute_is import systolic_compute_is
from scalesim.compute.systolic_compute_os import systolic_compute_os
from scalesim.compute.systolic_compute_ws import systolic_compute_ws
from scalesim.scale_config import scale_config
from scalesim.scale_sim import scalesim
from scalesim.topology_utils import topologies

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.normpath(os.path.join(HERE, "..", "..", "tests", "data", "scalesim"))
TOPOLOGIES = ["alexnet_conv1", "resnet18", "mobilenet"]
ARRAYS = [8, 32, 128]
DATAFLOWS = ["os", "ws", "is"]
COMPUTE = {"os": systolic_compute_os, "ws": systolic_compute_ws, "is": systolic_compute_is}

CFG = """[general]
run_name = {name}

[architecture_presets]
ArrayHeight: {rows}
ArrayWidth: {cols}
IfmapSramSzkB: 64
FilterSramSzkB: 64
OfmapSramSzkB: 64
IfmapOffset: 0
FilterOffset: 10000000
OfmapOffset: 20000000
Bandwidth: 10
Dataflow: {df}
MemoryBanks: 1

[run_presets]
InterfaceBandwidth: CALC
"""


def write_cfg(folder, name, rows, cols, df):
    path = os.path.join(folder, name + ".cfg")
    with open(path, "w") as f:
        f.write(CFG.format(name=name, rows=rows, cols=cols, df=df))
    return path


class _RowCount:
    """Stands in for a demand matrix that is only ever grown by row concatenation: keeps its shape,
    not its contents. SCALE-Sim's OS and IS models grow their demand matrices one fold at a time
    with np.concatenate, which is quadratic in the number of folds (hours for an 8x8 array on
    ResNet's first layer); the count of rows, all we read, is the same."""

    def __init__(self, rows, cols):
        self.shape = (rows, cols)


class _NumpyRowCounting:
    """numpy, except that concatenating onto a _RowCount only adds rows."""

    def __getattr__(self, name):
        return getattr(np, name)

    def concatenate(self, arrays, axis=0):
        if axis == 0 and isinstance(arrays, tuple) and isinstance(arrays[0], _RowCount):
            head, tail = arrays
            return _RowCount(head.shape[0] + tail.shape[0], head.shape[1])
        return np.concatenate(arrays, axis=axis)


def _row_counting(compute_class):
    class RowCounting(compute_class):
        def __setattr__(self, name, value):
            if name.endswith("_demand_matrix") and isinstance(value, np.ndarray):
                value = _RowCount(*value.shape)
            object.__setattr__(self, name, value)
    return RowCounting


def compute_model(cfg_path, topo_path):
    """Per layer: (compute cycles, mapping efficiency %, compute utilization %) from SCALE-Sim's
    compute model alone, its demand matrices reduced to their row counts."""
    config = scale_config()
    config.read_conf_file(cfg_path)
    topo = topologies()
    topo.load_arrays(topofile=topo_path)
    topo.topo_calc_hyperparams()
    out = []
    for layer in range(topo.get_num_layers()):
        ops = operand_matrix()
        ops.set_params(config_obj=config, topoutil_obj=topo, layer_id=layer)
        _, ifmap = ops.get_ifmap_matrix()
        _, filt = ops.get_filter_matrix()
        _, ofmap = ops.get_ofmap_matrix()
        module = sys.modules[COMPUTE[config.get_dataflow()].__module__]
        module.np = _NumpyRowCounting()
        try:
            array = _row_counting(COMPUTE[config.get_dataflow()])()
            array.set_params(config_obj=config, ifmap_op_mat=ifmap, filter_op_mat=filt, ofmap_op_mat=ofmap)
            demand_ifmap, demand_filter, demand_ofmap = array.get_demand_matrices()
        finally:
            module.np = np
        rows = demand_ofmap.shape[0]
        assert rows == demand_ifmap.shape[0] == demand_filter.shape[0]
        out.append((topo.get_layer_name(layer), rows - 1, array.get_avg_mapping_efficiency() * 100,
                    array.get_avg_compute_utilization() * 100))
    return out


def full_run(cfg_path, topo_path, folder):
    """Per layer: (total cycles, stall cycles, mapping %, compute util %) from the whole simulator."""
    sim = scalesim(save_disk_space=True, verbose=False, config=cfg_path, topology=topo_path)
    sim.run_scale(top_path=folder)
    run_name = os.path.splitext(os.path.basename(cfg_path))[0]
    with open(os.path.join(folder, run_name, "COMPUTE_REPORT.csv")) as f:
        rows = list(csv.reader(f))[1:]
    return [(int(r[1]), int(r[2]), float(r[4]), float(r[5])) for r in rows if r and r[0].strip()]


def single_layer_topology(folder, topo_path, layer_index):
    with open(topo_path) as f:
        lines = [l for l in f.read().splitlines()]
    header, body = lines[0], [l for l in lines[1:] if l.strip()]
    path = os.path.join(folder, "layer%d.csv" % layer_index)
    with open(path, "w") as f:
        f.write(header + "\n" + body[layer_index] + "\n")
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full-max-cycles", type=int, default=60000,
                    help="run the whole simulator for layers of at most this many compute cycles")
    ap.add_argument("--out", default=os.path.join(DATA, "expected_cycles.csv"))
    args = ap.parse_args()

    started = time.time()
    results = []
    full_count = 0
    with tempfile.TemporaryDirectory() as tmp:
        for topo_name in TOPOLOGIES:
            topo_path = os.path.join(DATA, topo_name + ".csv")
            for size in ARRAYS:
                for df in DATAFLOWS:
                    name = "%s_%dx%d_%s" % (topo_name, size, size, df)
                    cfg_path = write_cfg(tmp, name, size, size, df)
                    for index, (layer, cycles, mapping, util) in enumerate(compute_model(cfg_path, topo_path)):
                        method = "compute"
                        if cycles <= args.full_max_cycles or (topo_name == "alexnet_conv1" and size == 32):
                            one = single_layer_topology(tmp, topo_path, index)
                            total, stall, f_mapping, f_util = full_run(cfg_path, one, tmp)[0]
                            if total - stall != cycles or abs(f_mapping - mapping) > 1e-9 or abs(f_util - util) > 1e-9:
                                sys.exit("%s %s: full run says %d-%d cycles, compute model %d" %
                                         (name, layer, total, stall, cycles))
                            method = "full"
                            full_count += 1
                        results.append([topo_name, layer, size, size, df, cycles, "%.6f" % mapping,
                                        "%.6f" % util, method])
                        print(name, layer, cycles, method, flush=True)

    with open(args.out, "w", newline="") as f:
        f.write("# SCALE-Sim v2.0.2 (pip install scalesim==2.0.2) compute cycles; regenerate with\n")
        f.write("# python3 tools/python/scalesim_expected.py --full-max-cycles %d\n" % args.full_max_cycles)
        f.write("# method: full = whole simulator, Total - Stall cycles (CALC bandwidth, 64 kB SRAMs);\n")
        f.write("#         compute = its compute model's demand rows - 1 (equal to full wherever both ran)\n")
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["topology", "layer", "array_rows", "array_cols", "dataflow", "compute_cycles",
                    "mapping_efficiency_pct", "compute_utilization_pct", "method"])
        w.writerows(results)
    print("%d cases, %d run through the whole simulator, %.0f s" % (len(results), full_count, time.time() - started))


if __name__ == "__main__":
    main()
