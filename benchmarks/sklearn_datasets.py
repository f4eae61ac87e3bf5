"""handgrad.sklearn next to scikit-learn's own MLP on scikit-learn's bundled data sets.

Data sets: digits, breast cancer, wine, iris (classification: accuracy) and diabetes (regression: R^2),
each split 75/25 (stratified for classifiers) and standardized on the training part (the diabetes
target too). Both libraries get the same parameters: scikit-learn's defaults ((100,) ReLU, alpha 1e-4,
max_iter 200, ...) with solver adam, sgd or lbfgs, and random_state = seed. Five seeds (each also
draws its own split). The two fits of a case run back to back, in alternating order from seed to
seed (interleaved), so that a slow phase of the machine hits both alike.

Prints a table (mean test score over the seeds, its difference in points, mean and median fit time,
and the ratio of the median fit times, handgrad / scikit-learn) and, as its last line, the same numbers
as JSON, every seed's score and time included.

    python benchmarks/sklearn_datasets.py             # the full run (75 cases x 2 libraries), 1 BLAS thread
    python benchmarks/sklearn_datasets.py --quick     # 1 seed, max_iter=5: a smoke test
"""

import argparse
import json
import platform
import statistics
import sys
import time
import warnings

import numpy as np

DATASETS = ("digits", "breast_cancer", "wine", "iris", "diabetes")
SOLVERS = ("adam", "sgd", "lbfgs")


def load(name, seed):
    """(X_train, X_test, y_train, y_test, is_classifier), standardized on the training part."""
    from sklearn import datasets
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    classifier = name != "diabetes"
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=seed,
                                                        stratify=y if classifier else None)
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    if not classifier:
        mean, std = y_train.mean(), y_train.std()
        y_train, y_test = (y_train - mean) / std, (y_test - mean) / std
    return X_train, X_test, y_train, y_test, classifier


def timed_fit(estimator, X_train, X_test, y_train, y_test):
    """(fit seconds, test score)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter is expected with the defaults
        started = time.perf_counter()
        estimator.fit(X_train, y_train)
        seconds = time.perf_counter() - started
    return seconds, float(estimator.score(X_test, y_test))


def run(seeds, max_iter):
    from sklearn import neural_network

    import handgrad.sklearn as ours

    libraries = {"sklearn": neural_network, "handgrad": ours}
    cases = []
    for name in DATASETS:
        for solver in SOLVERS:
            figures = {library: {"seconds": [], "scores": []} for library in libraries}
            for seed in range(seeds):
                X_train, X_test, y_train, y_test, classifier = load(name, seed)
                kind = "MLPClassifier" if classifier else "MLPRegressor"
                order = list(libraries) if seed % 2 == 0 else list(libraries)[::-1]
                for library in order:
                    estimator = getattr(libraries[library], kind)(solver=solver, random_state=seed, max_iter=max_iter)
                    seconds, score = timed_fit(estimator, X_train, X_test, y_train, y_test)
                    figures[library]["seconds"].append(seconds)
                    figures[library]["scores"].append(score)
            case = {"dataset": name, "solver": solver, "metric": "accuracy" if classifier else "r2"}
            for library, values in figures.items():
                case[library] = {"mean_score": statistics.fmean(values["scores"]),
                                 "mean_seconds": statistics.fmean(values["seconds"]),
                                 "median_seconds": statistics.median(values["seconds"]),
                                 "scores": values["scores"], "seconds": values["seconds"]}
            case["score_difference_points"] = 100 * (case["handgrad"]["mean_score"] - case["sklearn"]["mean_score"])
            # the ratio of the medians: one slow phase of a shared machine would dominate a mean of five
            case["time_ratio"] = case["handgrad"]["median_seconds"] / case["sklearn"]["median_seconds"]
            cases.append(case)
            print_row(case)
    return cases


HEADER = (f"{'data set':<14} {'solver':<6} {'metric':<8} {'scikit-learn':>12} {'handgrad':>9} {'diff (pts)':>10} "
          f"{'sklearn fit (mean/median)':>26} {'handgrad fit (mean/median)':>27} {'time ratio':>10}")


def print_row(case):
    s, h = case["sklearn"], case["handgrad"]
    print(f"{case['dataset']:<14} {case['solver']:<6} {case['metric']:<8} {s['mean_score']:>12.4f} "
          f"{h['mean_score']:>9.4f} {case['score_difference_points']:>+10.2f} "
          f"{s['mean_seconds']:>16.3f}s {s['median_seconds']:>7.3f}s "
          f"{h['mean_seconds']:>17.3f}s {h['median_seconds']:>7.3f}s {case['time_ratio']:>10.2f}", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="random seeds per case (default 5)")
    parser.add_argument("--max-iter", type=int, default=200, help="max_iter of both estimators (default 200, "
                        "scikit-learn's default)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads for both libraries (default 1; 0: "
                        "the BLAS default). On data sets this small one thread is the faster setting for both, and "
                        "on a busy machine several threads make every fit wait on the others")
    parser.add_argument("--quick", action="store_true", help="1 seed and max_iter=5: checks that it runs")
    args = parser.parse_args(argv)
    seeds, max_iter = (1, 5) if args.quick else (args.seeds, args.max_iter)
    import sklearn
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    import handgrad

    print(f"handgrad {handgrad.__version__}, scikit-learn {sklearn.__version__}, numpy {np.__version__}, "
          f"Python {platform.python_version()}; {seeds} seed(s), max_iter={max_iter}, "
          f"BLAS threads: {args.threads or 'default'}; scores are means over the seeds")
    print(HEADER)
    with threadpool_limits(limits=args.threads or None, user_api="blas"):
        cases = run(seeds, max_iter)
    within = sum(case["score_difference_points"] >= -1.0 for case in cases)
    faster = sum(case["time_ratio"] < 1.0 for case in cases)
    print(f"score within 1 point of scikit-learn's or better: {within} of {len(cases)}; "
          f"fit faster than scikit-learn's: {faster} of {len(cases)}")
    print(json.dumps({"seeds": seeds, "max_iter": max_iter, "blas_threads": args.threads, "cases": cases,
                      "within_one_point": within, "faster": faster}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
