"""Homomorphic-encryption aggregation: CKKS and packed Paillier against masking and plaintext.

For n = 10 clients and each d, every backend encrypts the clients' vectors (values in
[-1, 1], the FedAvg encodings' range), the aggregator adds the ciphertexts and the key holder
decrypts the sum. Baselines measured in the same run, on the same vectors:

(a) ``paillier_speedup_over_naive_phe``: naive ``phe`` (one value per ciphertext, same key
    size), timed on a subsample and given per value, over packed Paillier per value;
(b) ``ckks_bytes_over_float32`` / ``paillier_bytes_over_float32``: ciphertext bytes per client
    over the float32 update (4 d bytes);
(c) each backend's client + server time over the masking protocol's (SecAgg, signed, the same
    n and d) and the server's over the plaintext sum.

Paillier at d = 10^6 encrypts for minutes per client; there the first ``PAILLIER_TIMED_BIG``
clients are encrypted and timed and their ciphertexts stand in for the others in the sum
(the aggregator's work is the same for any ciphertexts of that size). The JSON says where.
CPU seconds (``time.process_time``) throughout.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from benchmarks import log, measure, ratio
from secagg import he
from secagg.crypto.identity import IdentityDirectory
from secagg.he import paillier
from secagg.he.base import HEPublicKey, HESecretKey
from secagg.masking.driver import run_round
from secagg.masking.params import MaskingParams
from secagg.quantize import QuantizationSpec, quantize

N = 10
PRECISION = 1e-6
KEY_BITS = 3072
FULL_DIMS = (10**4, 10**5, 10**6)
QUICK_DIMS = (10**4,)
#: Naive phe encryptions timed (one value each); the per-value figure is their median.
NAIVE_VALUES = 40
#: Paillier clients really encrypted (and timed) at d = 10^6.
PAILLIER_TIMED_BIG = 2


def _vectors(d: int) -> dict[int, np.ndarray]:
    rng = np.random.default_rng([20261126, d])
    return {c: rng.uniform(-1, 1, d) for c in range(N)}


def _backend_case(mode: str, vectors: dict[int, np.ndarray]) -> dict[str, Any]:
    d = len(vectors[0])
    public: HEPublicKey
    secret: HESecretKey
    if mode == "ckks":
        from secagg.he import ckks

        public, secret = ckks.generate_keys(ckks.choose_params(1.0, N, PRECISION))
    else:
        public, secret = paillier.generate_keys(
            paillier.choose_params(1.0, N, PRECISION, key_bits=KEY_BITS)
        )
    timed = N if mode == "ckks" or d < 10**6 else PAILLIER_TIMED_BIG
    blobs, encrypt = [], []
    for c in range(timed):
        start = time.process_time()
        blobs.append(public.encrypt(vectors[c]).serialize())
        encrypt.append(time.process_time() - start)
    summed = [blobs[c % timed] for c in range(N)]
    server_key = he.load_public_key(public.serialize())  # the aggregator's: no secret
    start = time.process_time()
    total = server_key.sum_serialized(summed)
    aggregate = time.process_time() - start
    start = time.process_time()
    values = secret.decrypt(total)
    decrypt = time.process_time() - start
    expected = sum(vectors[c % timed] for c in range(N))
    error = float(np.abs(values - expected).max())
    per_client_bytes = statistics.mean(len(b) for b in blobs)
    return {
        "mode": mode,
        "clients_encrypted": timed,
        "encrypt_seconds_per_client": statistics.median(encrypt),
        "aggregate_seconds": aggregate,
        "decrypt_seconds": decrypt,
        "client_plus_server_seconds": statistics.median(encrypt) + aggregate + decrypt,
        "bytes_per_client": per_client_bytes,
        "bytes_over_float32": per_client_bytes / (4 * d),
        "max_abs_error": error,
        "error_bound": public.params.error_bound(N),
        "within_bound": error <= public.params.error_bound(N),
        "values_per_ciphertext": public.capacity.slots_per_ciphertext,
    }


def _naive_phe_per_value() -> float:
    """Seconds to encrypt one float with plain phe (one value per ciphertext, same key)."""
    from phe import paillier as phe

    public, _ = phe.generate_paillier_keypair(n_length=KEY_BITS)
    values = np.random.default_rng(1).uniform(-1, 1, NAIVE_VALUES)
    times = []
    for v in values:
        start = time.process_time()
        public.encrypt(float(v))
        times.append(time.process_time() - start)
    return statistics.median(times)


def _masking(vectors: dict[int, np.ndarray]) -> float:
    """Client + server CPU seconds of a signed SecAgg round on the same vectors."""
    d = len(vectors[0])
    spec = QuantizationSpec(bits=32, clip=1.0, max_clients=N)
    rng = np.random.default_rng(0)
    inputs = {c: quantize(v, spec, rng) for c, v in vectors.items()}
    directory, keys = IdentityDirectory.generate(range(N))
    params = MaskingParams.create(range(N), d, neighbors=N - 1, identities=directory)
    result = run_round(inputs, params, identities=keys)
    return sum(result.client_seconds.values()) + sum(result.server_seconds.values())


def _plaintext_sum(vectors: dict[int, np.ndarray]) -> float:
    stacked = list(vectors.values())
    return measure(lambda: sum(stacked), 3).cpu_median


def run(quick: bool) -> dict[str, Any]:
    dims = QUICK_DIMS if quick else FULL_DIMS
    log(f"  naive phe: {NAIVE_VALUES} single-value encryptions at {KEY_BITS} bits")
    naive = _naive_phe_per_value()
    results = []
    for d in dims:
        vectors = _vectors(d)
        row: dict[str, Any] = {"n": N, "d": d}
        for mode in ("ckks", "paillier"):
            log(f"  d={d}: {mode}")
            row[mode] = _backend_case(mode, vectors)
        log(f"  d={d}: masking and plaintext baselines")
        row["masking_seconds"] = _masking(vectors)
        row["plaintext_sum_seconds"] = _plaintext_sum(vectors)
        packed = row["paillier"]["encrypt_seconds_per_client"] / d
        row["ratios"] = {
            "paillier_speedup_over_naive_phe": ratio(naive, packed),
            "ckks_bytes_over_float32": row["ckks"]["bytes_over_float32"],
            "paillier_bytes_over_float32": row["paillier"]["bytes_over_float32"],
            "ckks_over_masking": ratio(
                row["ckks"]["client_plus_server_seconds"], row["masking_seconds"]
            ),
            "paillier_over_masking": ratio(
                row["paillier"]["client_plus_server_seconds"], row["masking_seconds"]
            ),
            "ckks_aggregate_over_plaintext_sum": ratio(
                row["ckks"]["aggregate_seconds"], row["plaintext_sum_seconds"]
            ),
            "paillier_aggregate_over_plaintext_sum": ratio(
                row["paillier"]["aggregate_seconds"], row["plaintext_sum_seconds"]
            ),
        }
        results.append(row)
    return {
        "benchmark": "he",
        "params": {
            "n": N,
            "dims": list(dims),
            "value_bound": 1.0,
            "precision": PRECISION,
            "paillier_key_bits": KEY_BITS,
            "naive_phe_values_timed": NAIVE_VALUES,
            "paillier_clients_encrypted_at_1e6": PAILLIER_TIMED_BIG,
            "clock": "time.process_time (CPU seconds of this process)",
        },
        "naive_phe_seconds_per_value": naive,
        "results": results,
        "ratios": results[-1]["ratios"],  # the largest d of the run
    }
