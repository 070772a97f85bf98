"""Cost of one SecAgg+ masking round: per-phase CPU time, bytes, and same-run baselines.

For every (n clients, d values, dropout) case one full round runs in memory
(``secagg.masking.driver.run_round``: real messages, real bytes). The dropped clients go
silent just before sending their masked input, the most expensive dropout for the server:
it must rebuild their mask keys and remove every pairwise mask they shared with a survivor.

Ratios, each against a baseline measured in the same process on the same data:

(a) ``server_over_plaintext_sum``: the server's total CPU time over a plain NumPy modular sum
    of the survivors' vectors (what aggregation costs without protection);
(b) ``server_unmasking_over_prg_floor``: server unmasking time over the bare AES-CTR keystream
    for exactly the masks it must regenerate (one self-mask per survivor, one pairwise mask
    per (dropped client, surviving neighbour) edge), and ``client_masking_over_prg_floor``:
    a client's masked-input time over its own k + 1 keystreams of d words;
(c) ``ours_over_flower``: our client + server time over Flower's SecAgg+ primitives doing
    the same protocol work (``benchmarks.flower_baseline``);
(d) ``consistency``: the signed round (the default, against a lying server: MACs on relayed
    keys and the BLS-signed survivor set) against the same round without it
    (``protection.consistency = "none"``): what each client computes and checks, extra bytes,
    extra client and server CPU time. Each timed signed round uses fresh identities, so it
    pays every static agreement of its pair keys: a deployment's first round. One more signed
    round with the same identities gives ``round_cpu_seconds_warm_pair_keys``, every later
    round of a deployment whose graph pairs are all known. Building the identity directory
    (checking each entry's proof of possession, once per party) is not part of a round and
    is reported as ``directory_check_seconds_per_entry``.
    Above ``SIGNED_MAX_N`` clients (100 in quick mode) only a round without the consistency
    phase runs, to bound the benchmark's time; the figures then count what each client would
    compute. That round takes its survivor set as broadcast (``MaskingParams.broadcast``, as
    the chain gives it), so that its survivors reveal pair-mask keys as the default signed
    round does: its server unmasking is the default's. A truly unsigned round (honest-but-
    curious server) reveals none, and its server agrees X25519 once per (dropped, surviving)
    edge instead.

Per case also: ``upload_over_plaintext`` (mean bytes a surviving client sends over its d
plaintext words of 4 bytes), ``round_cpu_seconds`` (every party's CPU: the server plus
each phase's mean client time times the clients that worked in it), and
``server_peak_bytes``: the server's peak memory measured with tracemalloc in one extra
unsigned round of its own (allocations made and kept inside the server's turns, plus the
largest transient of one turn; see ``secagg.masking.driver``), so that tracing does not
slow the timed rounds.

Times are CPU seconds (``time.process_time`` plus finished child processes: the server
rebuilds half of the pair masks in a second process when a round has many), as the round
driver reports them; ``server_unmasking_wall_over_prg_floor`` divides the server's
wall-clock unmasking time by the same single-core floor.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import statistics
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from benchmarks import log, measure, ratio
from benchmarks.flower_baseline import (
    FlowerRoundResult,
    FlowerWorkload,
    load_flower,
    pick_timed,
    run_flower_round,
)
from secagg.crypto import prg
from secagg.crypto.identity import IdentityDirectory, IdentityKey
from secagg.errors import BelowThresholdError
from secagg.masking.driver import MaskedRoundResult, run_round
from secagg.masking.params import (
    DEFAULT_COLLUDING_FRACTION,
    MASKED_INPUT,
    PHASES,
    MaskingParams,
)

BITS = 32
THRESHOLD = 0.6
SEED = 20240601
SESSION = b"benchmarks/secagg"
#: Round ids (i.e. neighbour graphs) searched for one that completes with the dropout set.
GRAPH_TRIES = 200
ABORT_RATE_GRAPHS = 40


@dataclass(frozen=True)
class Case:
    n: int
    d: int
    dropout: float

    @property
    def label(self) -> str:
        return f"n={self.n} d={self.d} dropout={self.dropout:g}"


HEADLINE = Case(100, 10**6, 0.1)
#: Cross-device scale (issue #11): thousands of clients, up to 30 % of them lost.
SCALE_GRID = [Case(n, d, p) for n in (1000, 10_000) for d in (10**4, 10**5) for p in (0.1, 0.3)]
FULL_GRID = [
    *(Case(n, d, p) for n in (10, 100, 500) for d in (10**4, 10**6) for p in (0.0, 0.1, 0.3)),
    *SCALE_GRID,
]
QUICK_GRID = [Case(10, 10**4, 0.0), Case(10, 10**4, 0.3), HEADLINE, Case(1000, 10**4, 0.1)]
#: Largest n whose round also runs signed (to bound the benchmark's time).
SIGNED_MAX_N = 1000
QUICK_SIGNED_MAX_N = 100
#: Largest n with the Flower baseline (its pure-Python Shamir and unmasking dominate above).
FLOWER_MAX_N = 500
#: Flower clients timed per case when n > 10 (quick, full); the rest are sampled out of the
#: clock (see flower_baseline). With n <= 10 every client is timed.
FLOWER_TIMED = {True: 4, False: 20}


def _repeats(case: Case, quick: bool) -> int:
    """Rounds per case: the median of three, except where one round takes seconds."""
    big = case.n * case.d >= 10**8 or case.n >= 1000
    if quick or case.n * case.d >= 10**9:
        return 1 if big else 3
    return 3


def _params(
    ids: list[int],
    d: int,
    round_id: int,
    dropout_rate: float,
    threshold: float | int = THRESHOLD,
    colluding_fraction: float = DEFAULT_COLLUDING_FRACTION,
) -> MaskingParams:
    """A deployment expecting this dropout rate (and gamma) sizes its SecAgg+ graph for it."""
    return MaskingParams.create(
        ids,
        d,
        threshold=threshold,
        bits=BITS,
        round_id=round_id,
        session=SESSION,
        dropout_rate=dropout_rate,
        colluding_fraction=colluding_fraction,
    )


def round_completes(params: MaskingParams, dropped: Collection[int]) -> bool:
    """Whether a round with these clients silent at masked_input can finish unmasking.

    The server's rule: every survivor's neighbourhood keeps >= t_s survivors (to rebuild its
    self-mask seed), and so does every dropped client that a survivor masked with (to
    rebuild its mask key); and the survivors stay one connected piece of the graph. Random
    dropouts of 30 % break this for some graphs.
    """
    graph, t_s = params.graph, params.share_threshold
    alive = set(params.client_ids) - set(dropped)
    if len(alive) < params.threshold:
        return False
    if any(len(graph.neighborhood(c) & alive) < t_s for c in alive) or not graph.connects(alive):
        return False
    return all(
        not (graph.neighbors(c) & alive) or len(graph.neighbors(c) & alive) >= t_s for c in dropped
    )


def _abort_rate(ids: list[int], d: int, dropped: Collection[int], rate: float) -> float:
    """Fraction of the first ABORT_RATE_GRAPHS graphs (round ids) on which the round aborts.

    (A quarter as many graphs from 5,000 clients up: each one takes a second to build.)
    """
    graphs = ABORT_RATE_GRAPHS if len(ids) < 5000 else ABORT_RATE_GRAPHS // 4
    fails = sum(not round_completes(_params(ids, d, r, rate), dropped) for r in range(graphs))
    return fails / graphs


def _completing_params(
    ids: list[int],
    d: int,
    dropped: Collection[int],
    rate: float,
    threshold: float | int = THRESHOLD,
    colluding_fraction: float = DEFAULT_COLLUDING_FRACTION,
) -> MaskingParams | None:
    """The first round id whose graph lets the round complete (the next round, in practice)."""
    for r in range(GRAPH_TRIES):
        params = _params(ids, d, r, rate, threshold, colluding_fraction)
        if round_completes(params, dropped):
            return params
    return None


def _median_phases(rounds: list[MaskedRoundResult], attr: str) -> dict[str, float]:
    per_phase = [getattr(r, attr) for r in rounds]
    return {p: statistics.median(x.get(p, 0.0) for x in per_phase) for p in PHASES}


def keystream_seconds(masks: int, dim: int, bits: int, repeats: int) -> float:
    """CPU seconds of the bare AES-CTR keystream for ``masks`` streams of ``dim`` words.

    The speed floor of masking: one AES-128-CTR stream per key, as ``secagg.crypto.prg``
    keys and chunks them, written into a cache-sized scratch buffer with no arithmetic.
    """
    nbytes = dim * prg.word_dtype(bits).itemsize
    chunk = min(prg.CHUNK_BYTES, nbytes)
    zeros, out = memoryview(bytes(chunk)), memoryview(bytearray(chunk))
    keys = [os.urandom(prg.KEY_BYTES) for _ in range(masks)]

    def generate() -> None:
        for key in keys:
            stream = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
            for begin in range(0, nbytes, chunk):
                size = min(chunk, nbytes - begin)
                stream.update_into(zeros[:size], out[:size])

    warmup = 1 if masks * nbytes <= 10**8 else 0
    return measure(generate, repeats, warmup=warmup).cpu_median


def plaintext_sum_seconds(vectors: list[np.ndarray], repeats: int) -> float:
    """CPU seconds of the unprotected aggregate: NumPy adds of the same vectors mod 2^32."""
    acc = np.zeros_like(vectors[0])
    # Small sums are repeated inside one timing so the clock's resolution does not matter.
    number = max(1, 10**7 // (len(vectors) * vectors[0].size))

    def add_all() -> None:
        for _ in range(number):
            acc.fill(0)
            for v in vectors:
                np.add(acc, v, out=acc)  # uint32 wraps: this is the sum mod 2^32

    return measure(add_all, repeats).cpu_median / number


def _flower_row(flower: FlowerRoundResult | None, reason: str) -> dict[str, Any]:
    if flower is None:
        return {"available": False, "reason": reason}
    return {
        "available": True,
        "client_seconds": flower.client_seconds,
        "client_seconds_total": sum(flower.client_seconds.values()),
        "server_seconds": flower.server_seconds,
        "server_seconds_total": sum(flower.server_seconds.values()),
        "bytes_sent_per_client": flower.bytes_sent_per_client,
        "clients_timed": flower.clients_timed,
        "masks_regenerated": flower.masks_regenerated,
        "sum_verified": flower.sum_verified,
    }


def measure_case(case: Case, quick: bool, flower_api: Any, flower_reason: str) -> dict[str, Any]:
    """One grid point: our round (repeated), its baselines, and the ratios between them."""
    rng = np.random.default_rng([SEED, case.n, case.d, int(case.dropout * 1000)])
    ids = list(range(case.n))
    dropped = sorted(int(c) for c in rng.choice(ids, round(case.dropout * case.n), replace=False))
    survivors = [c for c in ids if c not in set(dropped)]
    inputs = {c: rng.integers(0, 2**BITS, case.d, dtype=np.uint32) for c in ids}
    abort_rate = _abort_rate(ids, case.d, dropped, case.dropout)
    params = _completing_params(ids, case.d, dropped, case.dropout)
    common = {
        "case": case.label,
        "n": case.n,
        "d": case.d,
        "dropout": case.dropout,
        "dropped": len(dropped),
        "survivors": len(survivors),
        "graph_abort_rate": abort_rate,
    }
    if params is None:
        reason = (
            f"none of the first {GRAPH_TRIES} neighbour graphs lets this dropout set complete "
            "(a neighbourhood keeps fewer than t_s survivors): every round would abort"
        )
        log(f"  {case.label}: skipped, {reason}")
        return {**common, "aborted": reason}
    graph = params.graph
    repeats = _repeats(case, quick)

    signed_too = case.n <= (QUICK_SIGNED_MAX_N if quick else SIGNED_MAX_N)
    log(
        f"  {case.label}: {repeats} masked round(s){' signed and unsigned' if signed_too else ''}"
        f", k = {params.neighbors}, t_s = {params.share_threshold}"
    )
    rounds: list[MaskedRoundResult] = []
    walls, correct, aborts = [], True, []
    expected = np.zeros(case.d, dtype=np.uint32)
    for c in survivors:
        np.add(expected, inputs[c], out=expected)
    keys: dict[int, IdentityKey] | None = None
    signed = params
    unsigned_rounds: list[MaskedRoundResult] = []
    # Above SIGNED_MAX_N the timed round skips the signing work but, as the default signed
    # round does, reveals pair-mask keys: its survivor set is taken as broadcast (the chain).
    alone = dataclasses.replace(params, broadcast=True)
    variants = ((signed, rounds), (params, unsigned_rounds)) if signed_too else ((alone, rounds),)
    for _ in range(repeats):
        # Interleaved, so that load on the machine hits both variants alike.
        for variant, runs in variants:
            if runs is rounds and signed_too:  # fresh identities: no pair key known yet
                directory, keys = IdentityDirectory.generate(ids)
                variant = signed = dataclasses.replace(params, identities=directory)
            start = time.perf_counter()
            try:  # fresh keys every time; the graph (round id) stays the one chosen above
                result = run_round(
                    inputs, variant, dropouts={MASKED_INPUT: dropped}, identities=keys
                )
            except BelowThresholdError as exc:  # reported, never raised: benchmarks don't fail
                aborts.append(str(exc))
                continue
            if runs is rounds:
                walls.append(time.perf_counter() - start)
            correct &= result.included == survivors
            correct &= bool(np.array_equal(result.total, expected))
            result.total = np.empty(0, dtype=np.uint32)  # free the d-vector, keep the figures
            runs.append(result)
    if not rounds or (signed_too and not unsigned_rounds):
        return {**common, "aborted": aborts[0]}
    if signed_too:
        log(f"  {case.label}: one more signed round, its pair keys known")
        warm = run_round(inputs, signed, dropouts={MASKED_INPUT: dropped}, identities=keys)
        correct &= bool(np.array_equal(warm.total, expected))
        consistency = _consistency_cost(signed, rounds, unsigned_rounds, survivors)
        consistency["round_cpu_seconds_warm_pair_keys"] = _round_cpu([warm], case.n, len(survivors))
        consistency["directory_check_seconds_per_entry"] = _directory_check_seconds(ids[:50])
    else:
        consistency = _consistency_not_measured(params, survivors)

    log(f"  {case.label}: server memory (one more unsigned round, traced)")
    traced = run_round(inputs, params, dropouts={MASKED_INPUT: dropped}, trace_server_memory=True)
    correct &= bool(np.array_equal(traced.total, expected))
    server_peak = traced.server_peak_bytes
    del traced
    client = _median_phases(rounds, "client_seconds")
    server = _median_phases(rounds, "server_seconds")
    server_wall = _median_phases(rounds, "server_wall_seconds")
    last = rounds[-1]
    sent = statistics.mean(last.bytes_sent[c] for c in survivors)
    received = statistics.mean(last.bytes_received[c] for c in survivors)

    log(f"  {case.label}: baselines (plaintext sum, AES-CTR floor)")
    plain = plaintext_sum_seconds([inputs[c] for c in survivors], 3 if quick else 5)
    alive = set(survivors)
    edges = sum(len(graph.neighbors(d) & alive) for d in dropped)
    server_masks = len(survivors) + edges
    client_masks = params.neighbors + 1  # every neighbour shared keys: drops come later
    floor_repeats = 1 if server_masks * case.d > 10**8 else 3
    server_floor = keystream_seconds(server_masks, case.d, BITS, floor_repeats)
    client_floor = keystream_seconds(client_masks, case.d, BITS, 3)

    flower: FlowerRoundResult | None = None
    reason = flower_reason
    if case.n > FLOWER_MAX_N:
        flower_api_here, reason = (
            None,
            (
                f"not run above n = {FLOWER_MAX_N}: Flower's pure-Python Shamir sharing and "
                "unmasking would take most of the benchmark's time"
            ),
        )
    else:
        flower_api_here = flower_api
    if flower_api_here is not None:
        count = len(survivors) if case.n <= 10 else FLOWER_TIMED[quick]
        timed = pick_timed(survivors, count, SEED)
        exact = not quick or len(timed) == len(survivors)
        log(f"  {case.label}: Flower baseline ({len(timed)} clients timed, exact sum: {exact})")
        work = FlowerWorkload(
            inputs=inputs,
            neighbors={c: graph.neighbors(c) for c in ids},
            share_threshold=params.share_threshold,
            dropped=frozenset(dropped),
            timed=timed,
            exact_sum=exact,
        )
        try:
            flower = run_flower_round(flower_api_here, work)
        except Exception as exc:  # a broken baseline must not cost the other figures
            reason = f"the Flower baseline failed: {type(exc).__name__}: {exc}"
    del inputs, expected
    gc.collect()

    client_total, server_total = sum(client.values()), sum(server.values())
    round_cpu = _round_cpu(rounds, case.n, len(survivors))
    ours = client_total + server_total
    flower_client = flower_server = flower_total = None
    if flower is not None:
        flower_client = sum(flower.client_seconds.values())
        flower_server = sum(flower.server_seconds.values())
        flower_total = flower_client + flower_server
    ratios = {
        "server_over_plaintext_sum": ratio(server_total, plain),
        "server_unmasking_over_prg_floor": ratio(server["unmasking"], server_floor),
        "server_unmasking_wall_over_prg_floor": ratio(server_wall["unmasking"], server_floor),
        "client_masking_over_prg_floor": ratio(client[MASKED_INPUT], client_floor),
        "ours_over_flower": ratio(ours, flower_total),
        "client_over_flower": ratio(client_total, flower_client),
        "server_over_flower": ratio(server_total, flower_server),
        "upload_over_plaintext": ratio(sent, case.d * 4),
    }
    return {
        **common,
        "round_id": params.round_id,
        "neighbors": params.neighbors,
        "threshold": params.threshold,
        "share_threshold": params.share_threshold,
        "signed": signed_too,
        "repeats": len(rounds),
        "aborted_repeats": len(aborts),
        "sum_correct": correct,
        "round_wall_seconds_median": statistics.median(walls),
        "round_cpu_seconds": round_cpu,
        "client_seconds": client,
        "client_seconds_total": client_total,
        "server_seconds": server,
        "server_seconds_total": server_total,
        "server_wall_seconds": server_wall,
        "server_peak_bytes": server_peak,
        "server_memory": "tracemalloc: the server's turns in a separate unsigned round",
        "bytes_sent_per_client": sent,
        "bytes_received_per_client": received,
        "plaintext_bytes": case.d * 4,
        "plaintext_sum_seconds": plain,
        "prg_floor": {
            "server_masks": server_masks,
            "server_seconds": server_floor,
            "client_masks": client_masks,
            "client_seconds": client_floor,
        },
        "flower": _flower_row(flower, reason),
        "consistency": consistency,
        "ratios": ratios,
    }


def _round_cpu(runs: list[MaskedRoundResult], n: int, survivors: int) -> float:
    """Every party's CPU seconds in a round (median over runs): the server, plus each phase's
    mean client time times the clients that worked in it (drops happen at masked_input)."""
    client = _median_phases(runs, "client_seconds")
    server = _median_phases(runs, "server_seconds")
    working = {p: n if p in PHASES[:2] else survivors for p in PHASES}
    return sum(server.values()) + sum(client[p] * working[p] for p in PHASES)


def _directory_check_seconds(ids: list[int]) -> float:
    """CPU seconds to check one identity directory entry (its proof of possession)."""
    directory, _ = IdentityDirectory.generate(ids)
    records = {c: directory.raw(c) for c in ids}
    start = time.process_time()
    IdentityDirectory(records)
    return (time.process_time() - start) / len(ids)


def _signed_work(params: MaskingParams, survivors: list[int]) -> dict[str, Any]:
    """What a signed round adds per client, counted."""
    neighbours = statistics.mean(len(params.graph.neighbors(c)) for c in survivors)
    return {
        # a MAC on its keys per neighbour, and one on each neighbour's keys to check
        "macs_made_per_client": neighbours,
        "macs_checked_per_client": neighbours,
        # the static X25519 agreements behind those MACs: once per pair, ever
        "static_agreements_per_client_first_round": neighbours,
        "signatures_made_per_client": 1,  # BLS, on the survivor set
        "aggregate_checks_per_client": 1,  # one pairing check for the whole quorum
        "signers_per_aggregate": params.threshold,  # at least
    }


def _consistency_not_measured(params: MaskingParams, survivors: list[int]) -> dict[str, Any]:
    """What the signed round would add, counted rather than timed (large n)."""
    return {
        "measured": False,
        "reason": f"the signed round is not run at n = {params.n}, to bound the benchmark's time",
        **_signed_work(params, survivors),
        "extra_bytes_sent_per_client": None,
        "extra_bytes_received_per_client": None,
        "extra_client_seconds": None,
        "extra_server_seconds": None,
        "server_signed_over_unsigned": None,
        "client_signed_over_unsigned": None,
    }


def _consistency_cost(
    params: MaskingParams,
    signed: list[MaskedRoundResult],
    unsigned: list[MaskedRoundResult],
    survivors: list[int],
) -> dict[str, Any]:
    """What the signed consistency round adds to the same round without it (same run)."""

    def per_client(runs: list[MaskedRoundResult], attr: str) -> float:
        return statistics.mean(getattr(runs[-1], attr)[c] for c in survivors)

    def total(runs: list[MaskedRoundResult], attr: str) -> float:
        return statistics.median(sum(getattr(r, attr).values()) for r in runs)

    return {
        "measured": True,
        "round_cpu_seconds_unsigned": _round_cpu(unsigned, params.n, len(survivors)),
        **_signed_work(params, survivors),
        "extra_bytes_sent_per_client": per_client(signed, "bytes_sent")
        - per_client(unsigned, "bytes_sent"),
        "extra_bytes_received_per_client": per_client(signed, "bytes_received")
        - per_client(unsigned, "bytes_received"),
        "extra_client_seconds": total(signed, "client_seconds") - total(unsigned, "client_seconds"),
        "extra_server_seconds": total(signed, "server_seconds") - total(unsigned, "server_seconds"),
        "server_signed_over_unsigned": ratio(
            total(signed, "server_seconds"), total(unsigned, "server_seconds")
        ),
        "client_signed_over_unsigned": ratio(
            total(signed, "client_seconds"), total(unsigned, "client_seconds")
        ),
    }


def _warm_up(flower_api: Any) -> None:
    """One tiny round of each kind, so imports and first-call costs stay out of the figures."""
    ids = list(range(5))
    directory, keys = IdentityDirectory.generate(ids)
    params = MaskingParams.create(
        ids, 1000, threshold=THRESHOLD, neighbors=4, bits=BITS, identities=directory
    )
    inputs = {c: np.zeros(1000, dtype=np.uint32) for c in ids}
    run_round(inputs, params, dropouts={MASKED_INPUT: [0]}, identities=keys)
    if flower_api is not None:
        work = FlowerWorkload(
            inputs=inputs,
            neighbors={c: params.graph.neighbors(c) for c in ids},
            share_threshold=params.share_threshold,
            dropped=frozenset({0}),
            timed=frozenset(ids[1:]),
        )
        try:
            run_flower_round(flower_api, work)
        except Exception as exc:  # reported per case, where it fails again
            log(f"  Flower warm-up failed: {type(exc).__name__}: {exc}")


def selected_cases(spec: str) -> list[Case]:
    """``"n:d:dropout,..."`` (the ``SECAGG_BENCH_CASES`` variable): run only these cases."""
    cases = []
    for item in spec.split(","):
        try:
            n, d, dropout = item.strip().split(":")
            case = Case(int(n), int(float(d)), float(dropout))
        except ValueError:
            raise SystemExit(
                f"SECAGG_BENCH_CASES: {item!r} is not n:d:dropout (e.g. 10000:1e5:0.3)"
            ) from None
        if case.n < 3 or case.d < 1 or not 0 <= case.dropout < 1:
            raise SystemExit(f"SECAGG_BENCH_CASES: {item!r} needs n >= 3, d >= 1, 0 <= dropout < 1")
        cases.append(case)
    return cases


def run(quick: bool) -> dict[str, Any]:
    spec = os.environ.get("SECAGG_BENCH_CASES", "").strip()
    grid = selected_cases(spec) if spec else QUICK_GRID if quick else FULL_GRID
    flower_api, flower_reason = load_flower()
    if flower_api is None:
        log(f"  {flower_reason}")
    _warm_up(flower_api)
    results = []
    for case in grid:
        started = time.perf_counter()
        results.append(measure_case(case, quick, flower_api, flower_reason))
        log(f"  {case.label}: done in {time.perf_counter() - started:.1f} s")
    headline = next((r for r in results if r["case"] == HEADLINE.label), {})
    return {
        "benchmark": "secagg",
        "params": {
            "grid": [{"n": c.n, "d": c.d, "dropout": c.dropout} for c in grid],
            "headline": HEADLINE.label,
            "bits": BITS,
            "threshold": THRESHOLD,
            "neighbors": "automatic, k = O(log n) (MaskingParams.create(neighbors=0)); "
            "t_s = floor((k + 1) / 2) + 1",
            "signed_max_n": SIGNED_MAX_N,
            "flower_max_n": FLOWER_MAX_N,
            "server_memory": "tracemalloc peak of the server's turns, separate unsigned round",
            "dropout_phase": MASKED_INPUT,
            "inputs": "uniform random uint32 vectors (already quantized)",
            "clock": "time.process_time + finished child processes (CPU seconds)",
            "client_seconds": "mean per client that worked in the phase; median over repeats",
            "consistency": "signed (protection.consistency = 'signatures'), the default; "
            "the same round unsigned is the baseline of the 'consistency' figures",
            "flower_clients_timed": f"all if n <= 10, else {FLOWER_TIMED[quick]} survivors",
            "seed": SEED,
        },
        "results": results,
        "ratios": headline.get("ratios", {}),  # the case named by params["headline"]
        "environment": {"flwr": flower_api.version if flower_api else None},
    }


def render(result: Mapping[str, Any]) -> str:
    """One line per case: the headline figures and the three ratios."""
    columns = [
        ("n", lambda r: r["n"]),
        ("d", lambda r: r["d"]),
        ("drop", lambda r: r["dropout"]),
        ("k", lambda r: r["neighbors"]),
        ("client s", lambda r: r["client_seconds_total"]),
        ("mask s", lambda r: r["client_seconds"][MASKED_INPUT]),
        ("server s", lambda r: r["server_seconds_total"]),
        ("unmask s", lambda r: r["server_seconds"]["unmasking"]),
        ("KiB/client", lambda r: r["bytes_sent_per_client"] / 1024),
        ("up/plain", lambda r: r["ratios"]["upload_over_plaintext"]),
        ("round cpu s", lambda r: r["round_cpu_seconds"]),
        ("srv MiB", lambda r: r["server_peak_bytes"] / 2**20),
        ("(a) srv/plain", lambda r: r["ratios"]["server_over_plaintext_sum"]),
        ("(b) unmask/PRG", lambda r: r["ratios"]["server_unmasking_over_prg_floor"]),
        ("(b) wall/PRG", lambda r: r["ratios"]["server_unmasking_wall_over_prg_floor"]),
        ("(b) mask/PRG", lambda r: r["ratios"]["client_masking_over_prg_floor"]),
        ("(c) ours/flwr", lambda r: r["ratios"]["ours_over_flower"]),
        ("(d) +srv s", lambda r: r["consistency"]["extra_server_seconds"]),
        ("(d) +B/client", lambda r: r["consistency"]["extra_bytes_sent_per_client"]),
        ("abort rate", lambda r: r["graph_abort_rate"]),
        ("sum ok", lambda r: r["sum_correct"]),
    ]

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    rows = [
        [cell(get(r)) for _, get in columns]
        if "aborted" not in r
        else [str(r["n"]), str(r["d"]), str(r["dropout"])]
        + ["-"] * (len(columns) - 5)
        + [cell(r["graph_abort_rate"]), "aborted"]
        for r in result["results"]
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, (h, _) in enumerate(columns)]
    lines = ["  ".join(h.rjust(w) for (h, _), w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in rows]
    env = result.get("environment", {})
    lines.append("")
    lines.append(
        f"CPU seconds (process_time); flwr {env.get('flwr')}; ratios of the headline case "
        f"({result['params']['headline']}):"
    )
    lines += [f"  {k}: {cell(v)}" for k, v in result.get("ratios", {}).items()]
    for r in result["results"]:
        if "aborted" in r:
            lines.append(f"{r['case']}: {r['aborted']}")
    for r in result["results"]:
        if "flower" in r and not r["flower"]["available"]:
            lines.append(f"Flower baseline unavailable: {r['flower']['reason']}")
            break
    return "\n".join(lines)
