"""Attested HE sums: what the attestation step costs next to the HE round it protects.

n = 10 clients, t = 6, d values in [-1, 1] (the FedAvg encodings' range). The HE round as it
was (the baseline, measured in the same run on the same ciphertexts): each client encrypts,
the aggregator adds, the key holder decrypts. The attestation step on top of it
(:mod:`secagg.he.attest`), per role:

- client: sign its ciphertext's digest (Ed25519);
- aggregator: check n signatures while adding, publish the board, check t co-signatures and
  add them up;
- co-signer (t of them): check the n signatures on the board, parse and add the n
  ciphertexts, BLS-sign the sum statement;
- key holder: check t signed digests and one aggregate co-signature, hash the sum.

Bytes: each client's submission (ciphertext + signature + framing) against its bare
ciphertext; each co-signer receives the board (every ciphertext) and sends one attestation.
CPU seconds (``time.process_time``), median of ``REPEATS``; encryption, identical in both
flows, is done once per client and counted in the baseline.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks import log, measure, ratio
from secagg import he
from secagg.crypto.identity import IdentityDirectory
from secagg.he import ckks, paillier
from secagg.he.attest import (
    AttestedAggregator,
    AttestingClient,
    KeyHolderGate,
    session_from_public_key,
)
from secagg.he.base import HEPublicKey, HESecretKey

N = 10
T = 6
PRECISION = 1e-6
KEY_BITS = 3072  # protection.he_key_bits' default
REPEATS = 3
DIMS = (10**4,)


def _keys(mode: str) -> tuple[HEPublicKey, HESecretKey]:
    if mode == "ckks":
        return ckks.generate_keys(ckks.choose_params(1.0, N, PRECISION))
    return paillier.generate_keys(paillier.choose_params(1.0, N, PRECISION, key_bits=KEY_BITS))


def _cpu(operation: Callable[[], object]) -> float:
    return measure(operation, REPEATS, warmup=0).cpu_median


def _case(mode: str, d: int) -> dict[str, Any]:
    public, secret = _keys(mode)
    server_key = he.load_public_key(public.serialize())
    session = session_from_public_key(public.serialize())
    directory, identities = IdentityDirectory.generate(range(N))
    rng = np.random.default_rng([20261126, d])
    vectors = {c: rng.uniform(-1, 1, d) for c in range(N)}

    # The round as it was: encrypt, add, decrypt.
    encrypt, ciphertexts = [], {}
    for c in range(N):
        start = time.process_time()
        ciphertexts[c] = public.encrypt(vectors[c]).serialize()
        encrypt.append(time.process_time() - start)
    aggregate = _cpu(lambda: server_key.sum_serialized(ciphertexts[c] for c in range(N)))
    total = server_key.sum_serialized(ciphertexts[c] for c in range(N))
    decrypt = _cpu(lambda: secret.decrypt(total))
    baseline = {
        "encrypt_seconds_per_client": statistics.median(encrypt),
        "aggregate_seconds": aggregate,
        "decrypt_seconds": decrypt,
        "round_seconds": sum(encrypt) + aggregate + decrypt,
        "bytes_sent_per_client": statistics.mean(len(b) for b in ciphertexts.values()),
    }

    # The attestation step on the same ciphertexts.
    def clients() -> dict[int, AttestingClient]:
        return {
            c: AttestingClient(c, identities[c], directory, public, session, T, d) for c in range(N)
        }

    signed = {c: cl.submit(0, vectors[c]) for c, cl in clients().items()}
    sign = _cpu(lambda: identities[0].sign(b"x" * 90))  # what submit adds to encrypt

    def aggregator() -> AttestedAggregator:
        return AttestedAggregator(server_key, directory, session, 0, T, d)

    def receive_all() -> AttestedAggregator:
        agg = aggregator()
        for c in range(N):
            agg.receive(c, signed[c])
        return agg

    board = receive_all().board()
    attest = _cpu(lambda: clients()[0].attest(board))
    cosigners = range(T)
    attestations = {c: clients()[c].attest(board) for c in cosigners}

    def gather() -> bytes:
        agg = receive_all()
        agg.board()
        for c in cosigners:
            agg.receive_attestation(c, attestations[c])
        return agg.decrypt_request()

    aggregator_seconds = _cpu(gather)  # everything the aggregator does in an attested round
    request = gather()

    def key_holder_checks() -> None:
        gate = KeyHolderGate(directory, T, d)
        attested, total_bytes = gate.verify_request(request)
        gate.admit(attested, total_bytes, secret.public_key)

    checks = _cpu(key_holder_checks)
    aggregator_extra = aggregator_seconds - aggregate
    attestation = {
        "client_sign_seconds": sign,
        "aggregator_seconds_over_plain_sum": aggregator_extra,
        "cosigner_seconds": attest,
        "key_holder_check_seconds": checks,
        "step_seconds": N * sign + aggregator_extra + T * attest + checks,
        "bytes_sent_per_client": statistics.mean(len(m) for m in signed.values()),
        "bytes_received_per_cosigner": len(board),
        "bytes_sent_per_cosigner": statistics.mean(len(a) for a in attestations.values()),
        "bytes_key_holder_receives": len(request),
        "bytes_key_holder_received_before": len(total.serialize()),
    }
    return {
        "mode": mode,
        "d": d,
        "baseline": baseline,
        "attestation": attestation,
        "ratios": {
            "attestation_step_over_he_round_cpu": ratio(
                attestation["step_seconds"], baseline["round_seconds"]
            ),
            "cosigner_over_one_client_encrypt_cpu": ratio(
                attest, baseline["encrypt_seconds_per_client"]
            ),
            "client_bytes_over_bare_ciphertext": ratio(
                attestation["bytes_sent_per_client"], baseline["bytes_sent_per_client"]
            ),
            "cosigner_bytes_received_over_client_bytes_sent": ratio(
                len(board), attestation["bytes_sent_per_client"]
            ),
        },
    }


def run(quick: bool) -> dict[str, Any]:
    results = []
    for d in DIMS:
        for mode in ("ckks", "paillier"):
            log(f"  d={d}: {mode}")
            results.append(_case(mode, d))
    return {
        "benchmark": "he_attest",
        "params": {
            "n": N,
            "t": T,
            "dims": list(DIMS),
            "precision": PRECISION,
            "paillier_key_bits": KEY_BITS,
            "repeats": REPEATS,
            "clock": "time.process_time (CPU seconds of this process), median of repeats",
        },
        "results": results,
        "ratios": {r["mode"]: r["ratios"] for r in results},
    }
