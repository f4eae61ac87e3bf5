"""Sweep throughput: how many trials per minute hg.sweep finishes with 1 and 2 Dask workers.

Workload: a grid of ``trials`` learning rates (no halving, so every trial runs to the end) on generated
blobs (4 classes, 2 features, 4,000 samples by default), network 2-32-32-4 (ReLU, softmax), 20 epochs,
batch 32, one BLAS thread per trial. The LocalCluster is started and warmed up before the clock starts,
so the figure is the sweep's own throughput (task scheduling, the data sent to the workers, training,
the results gathered), not the cluster's start-up.

    python benchmarks/sweep_throughput.py               # 1 and 2 workers, 8 trials each
    python benchmarks/sweep_throughput.py --trials 16

``trials_per_minute(workers, trials)`` is also what benchmarks/scale.py reports as sweep throughput.
Importing this file has no side effects.
"""

import argparse
import json
import time

import numpy as np


def trials_per_minute(workers, trials, *, samples=4000, epochs=20):
    """Trials per minute of a sweep of ``trials`` trials on a fresh LocalCluster of ``workers`` processes."""
    import distributed

    import handgrad as hg
    from handgrad import datasets

    X, y = datasets.make_blobs(samples, n_classes=4, seed=0)
    params = {"learning_rate": [float(rate) for rate in np.geomspace(0.01, 0.5, trials)]}
    base = {"layers": "32:relu,32:relu,4:softmax", "epochs": epochs, "batch_size": 32}
    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  scheduler_kwargs={"dashboard": False}) as cluster, \
            distributed.Client(cluster) as client:
        client.wait_for_workers(workers)
        client.run(lambda: __import__("handgrad.sweeps"))  # every worker has imported handgrad before the clock
        started = time.perf_counter()
        result = hg.sweep(X, y, params, base=base, halving=False, client=client)
        elapsed = time.perf_counter() - started
    finished = result.counts().get("ok", 0)
    if finished != trials:
        raise RuntimeError(f"only {finished} of {trials} trials finished: {result.counts()}")
    return trials / (elapsed / 60.0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8, help="trials per sweep (default 8)")
    parser.add_argument("--samples", type=int, default=4000, help="training samples (default 4000)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs per trial (default 20)")
    args = parser.parse_args(argv)
    rates = {}
    for workers in (1, 2):
        rates[workers] = trials_per_minute(workers, args.trials, samples=args.samples, epochs=args.epochs)
        print(f"{workers} worker{'s' if workers > 1 else ''}: {rates[workers]:.1f} trials per minute "
              f"({args.trials} trials, {args.samples} samples, {args.epochs} epochs each)")
    print(f"speedup with 2 workers: {rates[2] / rates[1]:.2f}x")
    print(json.dumps({"trials": args.trials, "samples": args.samples, "epochs": args.epochs,
                      "trials_per_minute": {str(k): v for k, v in rates.items()}}))


if __name__ == "__main__":
    main()
