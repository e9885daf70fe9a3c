"""Benchmark an encrypted store against a plain one, in the same run.

    python tools/bench_crypto.py [--docs 2000] [--rounds 5] [--dir DIR]

Reports, with the two stores interleaved (a few operations of each in
turn, because disk latency here drifts within minutes):

- durable inserts/s (fdatasync per insert), target >= 0.9x plain;
- gets/s of random ids, target >= 0.8x, and gets/s with strict
  signature checks (for information: no target);
- scans (`all()` over the collection) in documents/s, target >= 0.8x;
- open time of an existing store, including the Argon2id run with the
  production parameters (`crypto.DEFAULT_PARAMS`), and creation time;
- the bound on each ratio: the plain operation's time plus the one
  step encryption adds to it that nothing removes (the signature of an
  insert, the AEAD open of a read), timed alone.

Exits with status 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from _workload import first_version, make_doc  # noqa: E402

import sentinel  # noqa: E402
from sentinel import crypto, objects, signing  # noqa: E402

PASSPHRASE = "benchmark passphrase"
STEP = 20
TARGETS = {"insert": 0.9, "get": 0.8, "scan": 0.8}


class Rates:
    """Operations per second of each job, overall and as a ratio."""

    def __init__(self, rates: dict[str, float], ratios: list[float]) -> None:
        self.rates = rates
        self.ratios = ratios

    @property
    def ratio(self) -> float:
        """Median over rounds of encrypted speed / plain speed.

        Each round times both stores back to back, so a burst of load
        from other processes on this shared machine lands in one round
        and moves the median little, where it would move a ratio of
        totals as much as it lasts.
        """
        return statistics.median(self.ratios)


def interleave(
    jobs: dict[str, Callable[[int], None]], count: int, step: int = STEP
) -> Rates:
    """Run `count` operations of each job, `step` at a time in turn (the
    order alternating between rounds); return the rates and, per round,
    the ratio of the second job's speed to the first's."""
    names = list(jobs)
    spent = dict.fromkeys(jobs, 0.0)
    ratios = []
    for number, start in enumerate(range(0, count, step)):
        took = {}
        order = names if number % 2 == 0 else names[::-1]
        for name in order:
            job = jobs[name]
            began = time.perf_counter()
            for index in range(start, min(start + step, count)):
                job(index)
            took[name] = time.perf_counter() - began
            spent[name] += took[name]
        ratios.append(took[names[0]] / took[names[1]])
    rates = {name: count / seconds for name, seconds in spent.items()}
    return Rates(rates, ratios)


def timed(call: Callable[[], object]) -> float:
    began = time.perf_counter()
    call()
    return time.perf_counter() - began


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--docs", type=int, default=2000)
    args.add_argument("--rounds", type=int, default=5)
    args.add_argument("--dir", default=None)
    options = args.parse_args()
    folder = tempfile.mkdtemp(prefix="sentinel-crypto-", dir=options.dir)
    try:
        missed = run(folder, options.docs, options.rounds)
    finally:
        shutil.rmtree(folder)
    sys.exit(1 if missed else 0)


def run(folder: str, docs: int, rounds: int) -> list[str]:
    plain_path = os.path.join(folder, "plain")
    sealed_path = os.path.join(folder, "sealed")
    create_plain = timed(lambda: sentinel.Store.new(plain_path).close())
    create_sealed = timed(
        lambda: sentinel.Store.new(sealed_path, PASSPHRASE).close()
    )
    plain = sentinel.Store.new(plain_path)
    encrypted = sentinel.Store.new(sealed_path, PASSPHRASE)
    stores = {"plain": plain, "encrypted": encrypted}
    collections = {name: s.collection("users") for name, s in stores.items()}
    ids = [f"user-{n}" for n in range(docs)]
    bodies = [make_doc(n) for n in range(docs)]
    ratios: dict[str, float] = {}

    print(f"{docs:,} documents of about 300 bytes; stores interleaved")
    inserts = interleave(
        {
            name: lambda i, c=c: c.insert(ids[i], bodies[i])
            for name, c in collections.items()
        },
        docs,
    )
    ratios["insert"] = report("durable insert/s", "insert", inserts)

    rng = random.Random(1)
    picks = [rng.randrange(docs) for _ in range(docs * rounds)]
    gets = interleave(
        {
            name: lambda i, c=c: c.get(ids[picks[i]])
            for name, c in collections.items()
        },
        len(picks),
        step=200,
    )
    ratios["get"] = report("get/s", "get", gets)

    strict = signing.VerificationOptions.strict()
    users = collections["encrypted"]
    strict_gets = interleave(
        {
            "silent": lambda i: users.get(ids[picks[i]]),
            "strict": lambda i: users.get(ids[picks[i]], verification=strict),
        },
        docs,
        step=200,
    )
    silent_rate = strict_gets.rates["silent"]
    strict_rate = strict_gets.rates["strict"]
    print(
        f"  encrypted get/s    silent {silent_rate:10,.0f}  strict "
        f"{strict_rate:10,.0f}  ({1e6 / strict_rate - 1e6 / silent_rate:.0f}"
        " us more per get to check the signature)"
    )

    scans = interleave(
        {
            name: lambda i, c=c: sum(1 for _ in c.all())
            for name, c in collections.items()
        },
        rounds * 2,
        step=1,
    )
    scans.rates = {name: rate * docs for name, rate in scans.rates.items()}
    ratios["scan"] = report("scan documents/s", "scan", scans)

    for store in stores.values():
        store.close()
    opens: dict[str, list[float]] = {"plain": [], "encrypted": []}
    for _ in range(rounds):
        opens["plain"].append(
            timed(lambda: sentinel.Store.new(plain_path).close())
        )
        opens["encrypted"].append(
            timed(lambda: sentinel.Store.new(sealed_path, PASSPHRASE).close())
        )
    params = crypto.DEFAULT_PARAMS
    kdf = statistics.median(
        timed(lambda: crypto.derive_kek(PASSPHRASE, bytes(16), params))
        for _ in range(rounds)
    )
    print(
        f"\nopen (median of {rounds}), Argon2id {params.memory_kib} KiB x "
        f"{params.iterations} x {params.lanes} lanes:\n"
        f"  plain {statistics.median(opens['plain']) * 1000:8.1f} ms  "
        f"encrypted {statistics.median(opens['encrypted']) * 1000:8.1f} ms"
        f"  (of which the KDF alone {kdf * 1000:.1f} ms)\n"
        f"create: plain {create_plain * 1000:.1f} ms  encrypted "
        f"{create_sealed * 1000:.1f} ms"
    )

    costs = {
        "insert": 1 / inserts.rates["plain"],
        "get": 1 / gets.rates["plain"],
        "scan": 1 / scans.rates["plain"],
    }
    print_bounds(costs, docs)

    missed = [
        f"{name} {ratios[name]:.2f}x < {target}x"
        for name, target in TARGETS.items()
        if ratios[name] < target
    ]
    print("\ntargets: " + ("all met" if not missed else "; ".join(missed)))
    return missed


def print_bounds(plain: dict[str, float], docs: int) -> None:
    """Time alone the one step of each encrypted operation that a plain
    store does not do and that nothing can remove: the Ed25519
    signature every version carries, and the AEAD open every read
    makes.  With every other step free, an encrypted operation costs
    the plain one plus that step, which bounds its ratio."""
    keys = crypto.Keys.from_secrets(os.urandom(32), os.urandom(32))
    associated = bytes(objects.HEADER_SIZE + objects.ADDRESS_SIZE)
    samples = []
    for n in range(min(docs, 200)):
        payload = first_version(f"user-{n}", make_doc(n))
        message = objects.typed_content(objects.TYPE_VERSION, payload)
        box = crypto.seal(
            keys.sealing_key,
            objects.compress(payload) + bytes(crypto.TRAILER_SIZE),
            associated,
        )
        samples.append((message, box))
    sign = best_per_item(
        lambda: [signing.sign(keys, message) for message, _ in samples],
        len(samples),
    )
    unseal = best_per_item(
        lambda: [
            crypto.open(keys.sealing_key, box, associated)
            for _, box in samples
        ],
        len(samples),
    )
    print(
        "\nbounds: the plain operation plus the one step encryption adds "
        "that nothing removes,\nwith every other step free"
    )
    for name, step, extra in (
        ("insert", "Ed25519 signature", sign),
        ("get", "AES-256-GCM-SIV open", unseal),
        ("scan", "AES-256-GCM-SIV open", unseal),
    ):
        cost = plain[name]
        print(
            f"  {name:7} plain {cost * 1e6:6.1f} us + {step} "
            f"{extra * 1e6:4.1f} us: at most {cost / (cost + extra):.2f}x "
            f"(target {TARGETS[name]}x)"
        )


def best_per_item(job: Callable[[], object], count: int) -> float:
    """Seconds per item of `job`, the best of five runs."""
    return min(timed(job) for _ in range(5)) / count


def report(label: str, target: str, found: Rates) -> float:
    rates = found.rates
    print(
        f"  {label:18} plain {rates['plain']:10,.0f}  encrypted "
        f"{rates['encrypted']:10,.0f}  ratio {found.ratio:.2f}x "
        f"(median of {len(found.ratios)} rounds; target >= "
        f"{TARGETS[target]}x)"
    )
    return found.ratio


if __name__ == "__main__":
    main()
