"""Past one machine, measured: data-parallel steps, sweep throughput, and the memory of a streamed fit.

(a) Data-parallel step time for K = 1 and 2 ranks (mpiexec, launched by this script) on the
    784-256-128-10 network in float32, for several global batch sizes: per step, the compute (this
    rank's shard: forward and backward), the wait for the slowest rank (a barrier), and the Allreduce
    of the gradient vector itself, with the Allreduce's share of the step. Then a projection for K
    ranks on a 10 Gbit/s network (docs/scaling.md derives it): t(K) = t_compute(B) / K + t_ring(K),
    t_ring = 2 (K - 1) / K * S / bandwidth + 2 (K - 1) * latency, S the gradient's bytes.
(b) Sweep throughput in trials per minute with 1 and 2 Dask workers, from
    benchmarks/sweep_throughput.py (trials_per_minute(workers, trials)).
(c) The peak RSS of one epoch of fit on a 4 GB memory-mapped .npy file that the script writes (and
    deletes afterwards), next to the same fit on a 200 MB in-memory subset, each in a fresh process.

    python benchmarks/scale.py            # the full run (writes a 4 GB file to --dir, default the temp dir)
    python benchmarks/scale.py --quick    # small sizes: a test runs this

The last line of the output is the whole report as JSON.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SIZES = (784, 256, 128, 10)
BANDWIDTH = 10e9 / 8  # 10 Gbit/s in bytes per second
LATENCY = 20e-6  # seconds per message on such a network (a typical TCP/Ethernet figure, not measured here)


# ---------------------------------------------------------------------------- (a) data-parallel steps
def step_worker(batch_sizes, steps):
    """Run under mpiexec: time `steps` data-parallel steps per global batch size; print JSON from rank 0."""
    from mpi4py import MPI

    import handgrad as hg
    from handgrad.distributed import shard_bounds

    comm = MPI.COMM_WORLD
    rank, K = comm.Get_rank(), comm.Get_size()
    net = hg.MLP(SIZES[0], [(SIZES[1], "relu"), (SIZES[2], "relu"), (SIZES[3], "softmax")], seed=0, dtype="float32")
    rng = np.random.default_rng(rank)
    report = []
    for B in batch_sizes:
        lo, hi = shard_bounds(B, rank, K)
        X = rng.random((hi - lo, SIZES[0]), dtype=np.float32)
        T = net.check_targets(rng.integers(0, SIZES[-1], hi - lo), hi - lo)
        times = np.zeros(3)  # compute, wait, allreduce
        for step in range(steps + 2):  # two warm-up steps
            started = time.perf_counter()
            net.backprop(X, T, None, training=True, n_total=B, penalty=rank == 0)
            computed = time.perf_counter()
            comm.Barrier()
            waited = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, net.grads, op=MPI.SUM)
            done = time.perf_counter()
            if step >= 2:
                times += (computed - started, waited - computed, done - waited)
        slowest = np.empty(3)
        comm.Allreduce(times / steps, slowest, op=MPI.MAX)
        report.append({"batch_size": B, "compute_ms": slowest[0] * 1e3, "wait_ms": slowest[1] * 1e3,
                       "allreduce_ms": slowest[2] * 1e3})
    if rank == 0:
        print(json.dumps({"ranks": K, "parameters": int(net.n_params), "gradient_bytes": int(net.grads.nbytes),
                          "steps": report}))


def data_parallel(batch_sizes, steps):
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if not os.path.exists(mpiexec):
        mpiexec = shutil.which("mpiexec")
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        mpiexec = None
    if mpiexec is None:
        return None
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    runs = []
    for K in (1, 2):
        done = subprocess.run([mpiexec, "-n", str(K), sys.executable, os.path.abspath(__file__), "--step-worker",
                               ",".join(map(str, batch_sizes)), "--steps", str(steps)],
                              capture_output=True, text=True, env=env, check=True)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    for run in runs:
        for step in run["steps"]:
            total = step["compute_ms"] + step["wait_ms"] + step["allreduce_ms"]
            step["step_ms"] = total
            step["allreduce_share"] = step["allreduce_ms"] / total
    return runs


def ring_seconds(K, nbytes, bandwidth=BANDWIDTH, latency=LATENCY):
    """A ring Allreduce of nbytes over K ranks: 2 (K - 1) messages of nbytes / K each way."""
    return 2 * (K - 1) / K * nbytes / bandwidth + 2 * (K - 1) * latency if K > 1 else 0.0


def projection(one_rank, ranks=(2, 4, 8, 16)):
    """Speedup t(1) / t(K) on a 10 Gbit/s network, from the measured single-rank compute time per batch."""
    nbytes = one_rank["gradient_bytes"]
    rows = []
    for step in one_rank["steps"]:
        t1 = step["compute_ms"] / 1e3
        rows.append({"batch_size": step["batch_size"],
                     "speedup": {K: t1 / (t1 / K + ring_seconds(K, nbytes)) for K in ranks}})
    per_sample = min(step["compute_ms"] / 1e3 / step["batch_size"] for step in one_rank["steps"])
    # data-parallel over K ranks pays off (t(K) < t(1)) once t1 (1 - 1/K) > t_ring(K): B > t_ring K / ((K-1) c)
    break_even = {K: ring_seconds(K, nbytes) * K / ((K - 1) * per_sample) for K in ranks}
    # half the ideal speedup (t(K) <= 2 t(1) / K) once c B / K >= t_ring(K): B >= K t_ring / c
    half = {K: K * ring_seconds(K, nbytes) / per_sample for K in ranks}
    return {"ranks": list(ranks), "rows": rows, "compute_per_sample_us": per_sample * 1e6,
            "ring_ms": {K: ring_seconds(K, nbytes) * 1e3 for K in ranks}, "break_even_batch": break_even,
            "half_efficiency_batch": half}


# ---------------------------------------------------------------------------- (b) sweeps
def sweeps(trials):
    sys.path.insert(0, HERE)
    try:
        from sweep_throughput import trials_per_minute
    except ImportError as error:
        return {"missing": f"part (b) needs benchmarks/sweep_throughput.py and handgrad's sweeps ({error})"}
    return {str(workers): trials_per_minute(workers, trials) for workers in (1, 2)}


# ---------------------------------------------------------------------------- (c) memory of a streamed fit
FEATURES, CLASSES = 64, 10


def write_npy(path, rows, chunk_rows=1 << 18):
    """X (rows, 64) float32 and y (rows,) uint8, written chunk by chunk with file writes (no memory map)."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(CLASSES, FEATURES)).astype(np.float32)
    with open(path + "-X.npy", "wb") as fx, open(path + "-y.npy", "wb") as fy:
        np.lib.format.write_array_header_2_0(fx, {"descr": "<f4", "fortran_order": False, "shape": (rows, FEATURES)})
        np.lib.format.write_array_header_2_0(fy, {"descr": "|u1", "fortran_order": False, "shape": (rows,)})
        for start in range(0, rows, chunk_rows):
            n = min(chunk_rows, rows - start)
            y = rng.integers(0, CLASSES, n).astype(np.uint8)
            X = centres[y] + rng.normal(size=(n, FEATURES)).astype(np.float32)
            fx.write(X.tobytes())
            fy.write(y.tobytes())
    return path + "-X.npy", path + "-y.npy"


_RSS_CHILD = """
import sys, time, numpy as np
import handgrad as hg
mode, X_path, y_path, rows = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
def status_mb(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024
if mode == "mapped":
    X, y = np.load(X_path, mmap_mode="r"), np.load(y_path, mmap_mode="r")
else:  # the first rows, read into memory
    X, y = np.array(np.load(X_path, mmap_mode="r")[:rows]), np.array(np.load(y_path, mmap_mode="r")[:rows])
net = hg.MLP(X.shape[1], [(32, "relu"), (10, "softmax")], seed=0, dtype="float32")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to the current RSS: reading the subset (map and copy) does not count
before = status_mb("VmRSS:")
started = time.perf_counter()
net.fit(X, y, epochs=1, batch_size=1024, optimizer="adam", learning_rate=1e-3, verbose=False)
print(before, status_mb("VmHWM:"), time.perf_counter() - started, X.nbytes, len(X))
"""


def fit_rss(mode, X_path, y_path, rows=0):
    out = subprocess.run([sys.executable, "-c", _RSS_CHILD, mode, X_path, y_path, str(rows)], capture_output=True,
                         text=True, check=True).stdout.split()
    return {"rss_before_fit_mb": float(out[0]), "peak_rss_mb": float(out[1]), "seconds": float(out[2]),
            "data_mb": int(out[3]) / 2 ** 20, "rows": int(out[4])}


def memory(file_bytes, subset_bytes, directory):
    row_bytes = FEATURES * 4
    folder = tempfile.mkdtemp(prefix="handgrad-scale-", dir=directory)
    try:
        X_path, y_path = write_npy(os.path.join(folder, "data"), file_bytes // row_bytes)
        return {"mapped": fit_rss("mapped", X_path, y_path),
                "in_memory_subset": fit_rss("subset", X_path, y_path, subset_bytes // row_bytes)}
    finally:
        shutil.rmtree(folder)


# ---------------------------------------------------------------------------- report
def print_report(report):
    runs = report["data_parallel"]
    print("(a) data-parallel step, 784-256-128-10 float32 (per step; the slowest rank's times)")
    if runs is None:
        print("    needs mpi4py and mpiexec: pip install handgrad[mpi]")
    else:
        print(f"    gradient: {runs[0]['parameters']} parameters, {runs[0]['gradient_bytes'] / 1e6:.2f} MB")
        print("    K  batch  compute ms  wait ms  allreduce ms  step ms  allreduce share")
        for run in runs:
            for s in run["steps"]:
                print(f"    {run['ranks']}  {s['batch_size']:>5}  {s['compute_ms']:>10.3f}  {s['wait_ms']:>7.3f}  "
                      f"{s['allreduce_ms']:>12.3f}  {s['step_ms']:>7.3f}  {s['allreduce_share']:>15.1%}")
        p = report["projection"]
        ring = ", ".join(f"K={K}: {t:.2f} ms" for K, t in p["ring_ms"].items())
        print(f"    projected speedup on 10 Gbit/s (ring allreduce {ring})")
        for row in p["rows"]:
            speedups = "  ".join(f"K={K} x{v:.2f}" for K, v in row["speedup"].items())
            print(f"    batch {row['batch_size']:>5}: {speedups}")
        print("    faster than one rank from batch " + ", ".join(f"K={K}: {b:.0f}"
                                                              for K, b in p["break_even_batch"].items()))
        print("    half the ideal speedup from batch " + ", ".join(f"K={K}: {b:.0f}"
                                                              for K, b in p["half_efficiency_batch"].items()))
    sweep = report["sweeps"]
    print("(b) sweep throughput")
    if "missing" in sweep:
        print(f"    {sweep['missing']}")
    else:
        for workers, rate in sweep.items():
            print(f"    {workers} worker(s): {rate:.1f} trials per minute")
    print("(c) peak RSS of one epoch of fit (64 features float32, 64-32-10, batch 1024, Adam)")
    for name, m in report["memory"].items():
        print(f"    {name:<17} data {m['data_mb']:>8.0f} MB ({m['rows']} rows): RSS before fit "
              f"{m['rss_before_fit_mb']:.0f} MB, peak {m['peak_rss_mb']:.0f} MB, {m['seconds']:.1f} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (the test's run)")
    parser.add_argument("--dir", default=None, help="where to write the temporary data file (default: temp dir)")
    parser.add_argument("--step-worker", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step_worker:
        return step_worker([int(b) for b in args.step_worker.split(",")], args.steps)
    batch_sizes = (64, 1024) if args.quick else (32, 128, 512, 2048)
    runs = data_parallel(batch_sizes, args.steps or (3 if args.quick else 30))
    report = {"data_parallel": runs, "projection": projection(runs[0]) if runs else None,
              "sweeps": sweeps(2 if args.quick else 8),
              "memory": memory(8 * 2 ** 20 if args.quick else 4 * 2 ** 30, 2 ** 20 if args.quick else 200 * 2 ** 20,
                               args.dir)}
    print_report(report)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
