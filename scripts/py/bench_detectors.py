"""nadir's detectors beside scikit-learn's, on the same standardized features.

Called by scripts/bench-detectors. For every data set it prepares one
training and one test matrix (one-hot categories, StandardScaler fitted on
the training rows), saves them as .npy, fits and scores each detector with
scikit-learn here and with nadir (nadir-bench-detectors) on those very
files, and prints ROC-AUC, average precision, fit and score seconds side by
side. Scores are oriented "higher = more anomalous" for both.
"""

import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd
from sklearn.ensemble import IsolationForest
from sklearn.kernel_approximation import Nystroem
from sklearn.linear_model import SGDOneClassSVM
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.neighbors import LocalOutlierFactor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import OneClassSVM

DATASETS, BENCH, NADIR = sys.argv[1], sys.argv[2], sys.argv[3]
SEED = 42
# LOF and the One-Class SVM keep or solve over their training set: both
# libraries get the same seeded sample of at most this many training rows.
MAX_TRAIN = int(os.environ.get("NADIR_BENCH_MAX_TRAIN", "30000"))
SPEED_ROWS = [int(n) for n in os.environ.get("NADIR_BENCH_SPEED_ROWS", "100000,1000000").split(",") if n]
IF_SEEDS = 20
SKLEARN_OCSVM_TIMEOUT = int(os.environ.get("NADIR_BENCH_OCSVM_TIMEOUT", "300"))
WORK = tempfile.mkdtemp(prefix="nadir-bench-")


def standardized(train, test):
    scaler = StandardScaler().fit(train)
    return scaler.transform(train), scaler.transform(test)


def nsl_kdd():
    base = os.path.join(DATASETS, "nsl-kdd")
    train = pd.read_csv(os.path.join(base, "KDDTrain+_20Percent.csv"))
    test = pd.read_csv(os.path.join(base, "KDDTest+.csv"))
    categorical = ["protocol_type", "service", "flag"]
    numeric = [c for c in train.columns if c not in categorical + ["label", "difficulty"]]
    encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False).fit(train[categorical])

    def matrix(frame):
        return np.hstack([frame[numeric].to_numpy(float), encoder.transform(frame[categorical])])

    x_train, x_test = standardized(matrix(train), matrix(test))
    return x_train, x_test, (test["label"] != "normal").to_numpy()


def kdd99(name):
    frame = pd.read_csv(os.path.join(DATASETS, "kdd99", f"kdd99-{name}.csv"))
    x = frame[["duration", "src_bytes", "dst_bytes"]].to_numpy(float)
    y = (frame["label"] == "attack").to_numpy()
    x_train, x_test, _, y_test = train_test_split(x, y, test_size=0.3, random_state=SEED)
    x_train, x_test = standardized(x_train, x_test)
    return x_train, x_test, y_test


def generated_capture():
    capture = os.path.join(WORK, "generated.pcap")
    flows = os.path.join(WORK, "generated.parquet")
    subprocess.run([NADIR, "gen-capture", "-o", capture, "--hosts", "60", "--duration", "600"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run([NADIR, "flows", capture, "-o", flows], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    table = pd.read_parquet(flows)
    truth = pd.read_csv(capture + ".labels.csv")
    attack = set()
    for r in truth.itertuples():
        attack.add((r.protocol, r.src_ip, r.src_port, r.dst_ip, r.dst_port))
        attack.add((r.protocol, r.dst_ip, r.dst_port, r.src_ip, r.src_port))
    y = np.array([(r.protocol, r.src_ip, r.src_port, r.dst_ip, r.dst_port) in attack
                  for r in table.itertuples()])
    columns = list(table.columns)
    features = columns[columns.index("duration_s"):columns.index("src_bytes_out_60s") + 1]
    x = table[features].to_numpy(float)
    x_train, x_test, _, y_test = train_test_split(x, y, test_size=0.3, random_state=SEED)
    x_train, x_test = standardized(x_train, x_test)
    return x_train, x_test, y_test


def sample_flows(rows):
    path = os.path.join(WORK, f"sample-{rows}.csv")
    subprocess.run([NADIR, "sample", "-o", path, "--rows", str(rows), "--seed", "7"],
                   check=True, stdout=subprocess.DEVNULL)
    frame = pd.read_csv(path)
    x = StandardScaler().fit_transform(frame.drop(columns=["label"]).to_numpy(float))
    return x, x, (frame["label"] != "normal").to_numpy()


def sklearn_detector(algorithm, seed):
    if algorithm == "isolation_forest":
        return IsolationForest(n_estimators=100, max_samples=256, random_state=seed, n_jobs=-1)
    if algorithm == "local_outlier_factor":
        return LocalOutlierFactor(n_neighbors=20, novelty=True, n_jobs=-1)
    return OneClassSVM(kernel="rbf", gamma="scale", nu=0.1, cache_size=256)


def run_sklearn(algorithm, x_train, x_test, seed=SEED):
    model = sklearn_detector(algorithm, seed)
    started = time.perf_counter()
    model.fit(x_train)
    fit = time.perf_counter() - started
    started = time.perf_counter()
    scores = -model.score_samples(x_test)
    return scores, fit, time.perf_counter() - started


def run_nadir(algorithm, x_train, x_test, *extra):
    train, test, out = (os.path.join(WORK, n) for n in ("train.npy", "test.npy", "scores.npy"))
    np.save(train, np.ascontiguousarray(x_train, dtype=np.float64))
    np.save(test, np.ascontiguousarray(x_test, dtype=np.float64))
    result = subprocess.run([BENCH, "--algorithm", algorithm, "--train", train, "--test", test,
                             "--scores", out, *extra], check=True, capture_output=True, text=True)
    info = json.loads(result.stdout)
    return np.load(out), info["fit_seconds"], info["score_seconds"], info["fit"]


def sample_rows(x, limit):
    if len(x) <= limit:
        return x
    rows = np.sort(np.random.default_rng(SEED).choice(len(x), limit, replace=False))
    return x[rows]


def metrics(scores, y):
    return roc_auc_score(y, scores), average_precision_score(y, scores)


def line(cells, widths):
    return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"


ALGORITHMS = ["isolation_forest", "local_outlier_factor", "one_class_svm"]
SHORT = {"isolation_forest": "IF", "local_outlier_factor": "LOF", "one_class_svm": "OCSVM"}
failures = []

print(f"machine: {multiprocessing.cpu_count()} cores; scikit-learn and nadir use all of them")
print(f"LOF and One-Class SVM fit on a seeded sample of at most {MAX_TRAIN} training rows (the same for both);")
print(f"Isolation Forest figures are means over {IF_SEEDS} seeds for both libraries")
print()
print("## Accuracy (ROC-AUC / average precision on the test rows)")
print()
widths = [17, 5, 6, 6, 15, 15, 7, 21]
print(line(["data set", "model", "train", "test", "scikit-learn", "nadir", "Δ AUC", "fit s (sklearn/nadir)"], widths))
print(line(["-" * w for w in widths], widths))
for name, load in [("nsl-kdd", nsl_kdd), ("kdd99-http", lambda: kdd99("http")),
                   ("kdd99-smtp", lambda: kdd99("smtp")), ("generated capture", generated_capture)]:
    x_train, x_test, y_test = load()
    for algorithm in ALGORITHMS:
        train = x_train if algorithm == "isolation_forest" else sample_rows(x_train, MAX_TRAIN)
        extra = {"local_outlier_factor": ["--max-train", str(len(train))],
                 "one_class_svm": ["--solver", "exact"]}.get(algorithm, [])
        # Isolation Forest is random: both libraries are compared on the
        # mean over IF_SEEDS seeds, not on one draw.
        seeds = range(IF_SEEDS) if algorithm == "isolation_forest" else [SEED]
        s_runs = [run_sklearn(algorithm, train, x_test, seed) for seed in seeds]
        n_runs = [run_nadir(algorithm, train, x_test, "--seed", str(seed), *extra) for seed in seeds]
        s_auc, s_ap = np.mean([metrics(r[0], y_test) for r in s_runs], axis=0)
        n_auc, n_ap = np.mean([metrics(r[0], y_test) for r in n_runs], axis=0)
        s_fit, n_fit = np.mean([r[1] for r in s_runs]), np.mean([r[1] for r in n_runs])
        if n_auc < s_auc - 0.01:
            failures.append(f"{name} {algorithm}: nadir ROC-AUC {n_auc:.4f} < scikit-learn {s_auc:.4f} - 0.01")
        print(line([name, SHORT[algorithm], len(train), len(x_test), f"{s_auc:.4f} / {s_ap:.4f}",
                    f"{n_auc:.4f} / {n_ap:.4f}", f"{n_auc - s_auc:+.4f}", f"{s_fit:.2f} / {n_fit:.2f}"], widths),
              flush=True)

print()
print("## Speed (fit + score on the same rows, seconds)")
print()
widths = [13, 33, 22, 16, 9, 15]
print(line(["rows", "model", "scikit-learn fit+score", "nadir fit+score", "speed-up", "ROC-AUC sk/nadir"], widths))
print(line(["-" * w for w in widths], widths))


def speed_row(rows, label, sklearn_result, nadir_result, y=None):
    n_total = nadir_result[1] + nadir_result[2]
    auc = lambda scores: f"{roc_auc_score(y, scores):.3f}" if y is not None and scores is not None else "-"
    if sklearn_result is None:
        s_cell, ratio, s_auc = "not run", "", "-"
    elif isinstance(sklearn_result, str):
        s_cell, ratio, s_auc = sklearn_result, "", "-"
    else:
        s_total = sklearn_result[1] + sklearn_result[2]
        s_cell = f"{sklearn_result[1]:.2f} + {sklearn_result[2]:.2f}"
        ratio = f"{s_total / n_total:.1f}x"
        s_auc = auc(sklearn_result[0])
    print(line([rows, label, s_cell, f"{nadir_result[1]:.2f} + {nadir_result[2]:.2f}", ratio,
                f"{s_auc} / {auc(nadir_result[0])}"], widths), flush=True)


def sklearn_with_timeout(algorithm, x, seconds):
    """scikit-learn's exact OneClassSVM in a child process, given up after `seconds`."""
    path = os.path.join(WORK, "speed.npy")
    np.save(path, x)
    code = ("import numpy as np, time; from sklearn.svm import OneClassSVM; x = np.load(%r); "
            "t = time.perf_counter(); m = OneClassSVM(gamma='scale', nu=0.1, cache_size=256).fit(x); "
            "f = time.perf_counter() - t; t = time.perf_counter(); m.score_samples(x); "
            "print(f, time.perf_counter() - t)") % path
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=seconds, check=True).stdout.split()
        return None, float(out[0]), float(out[1])
    except subprocess.TimeoutExpired:
        return f"unfinished after {seconds} s"


x_nsl, x_nsl_test, y_nsl = nsl_kdd()
for algorithm in ALGORITHMS:
    extra = {"local_outlier_factor": ["--max-train", str(len(x_nsl))],
             "one_class_svm": ["--solver", "exact"]}.get(algorithm, [])
    speed_row(f"NSL-KDD {len(x_nsl)}", SHORT[algorithm] + (" exact" if extra else ""),
              run_sklearn(algorithm, x_nsl, x_nsl_test), run_nadir(algorithm, x_nsl, x_nsl_test, *extra), y_nsl)
for rows in SPEED_ROWS:
    x, _, y = sample_flows(rows)
    speed_row(rows, "IF", run_sklearn("isolation_forest", x, x), run_nadir("isolation_forest", x, x), y)
    sk = run_sklearn("local_outlier_factor", x, x) if rows <= 100_000 else None
    speed_row(rows, "LOF exact, all rows", sk,
              run_nadir("local_outlier_factor", x, x, "--max-train", str(rows)), y)
    speed_row(rows, "LOF default (10 000-row sample)", sk, run_nadir("local_outlier_factor", x, x), y)
    nadir_ocsvm = run_nadir("one_class_svm", x, x)
    sk = sklearn_with_timeout("one_class_svm", x, SKLEARN_OCSVM_TIMEOUT) if rows >= 1_000_000 else None
    speed_row(rows, f"OCSVM auto ({nadir_ocsvm[3]['solver']})", sk, nadir_ocsvm, y)
    started = time.perf_counter()
    approx = make_pipeline(Nystroem(gamma=1.0 / x.shape[1], n_components=256, random_state=SEED),
                           SGDOneClassSVM(nu=0.1, random_state=SEED)).fit(x)
    fit = time.perf_counter() - started
    started = time.perf_counter()
    approx_scores = -approx.score_samples(x)
    print(line([rows, "sklearn Nystroem+SGDOneClassSVM", f"{fit:.2f} + {time.perf_counter() - started:.2f}",
                "", "", f"{roc_auc_score(y, approx_scores):.3f} / -"], widths), flush=True)

print()
if failures:
    print("parity aim missed:")
    for f in failures:
        print("  " + f)
    sys.exit(1)
print("parity aim met: nadir's ROC-AUC >= scikit-learn's - 0.01 for every detector and data set")
