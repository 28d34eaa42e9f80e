"""Zoo workload: a python3 interpreter holding live state (a suspended generator, a
dict of lists, a closure, an object), blocked in sigwait() for SIGTERM; then it checks
that the state is intact and continues the generator.

Environment: ZOO_READY (FIFO to write "ready\\n" to), ZOO_CORRUPT=1 damages the state.
"""

import hashlib
import os
import signal
import sys


def collatz_lengths(start):
    """Yields the Collatz sequence length of start, start+1, ..."""
    n = start
    while True:
        x, steps = n, 0
        while x != 1:
            x = x // 2 if x % 2 == 0 else 3 * x + 1
            steps += 1
        yield n, steps
        n += 1


def make_counter():
    count = 0

    def bump(by):
        nonlocal count
        count += by
        return count

    return bump


class Ledger:
    def __init__(self):
        self.entries = []

    def add(self, name, amount):
        self.entries.append((name, amount))

    def total(self):
        return sum(a for _, a in self.entries)


def digest(state):
    h = hashlib.sha256()
    for key in sorted(state):
        h.update(repr((key, state[key])).encode())
    return h.hexdigest()


def main():
    failures = []
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    gen = collatz_lengths(1)
    first = [next(gen) for _ in range(1000)]
    state = {f"k{i}": [i, i * i, str(i) * 3, float(i) / 7] for i in range(20000)}
    want_digest = digest(state)
    bump = make_counter()
    for i in range(100):
        bump(i)
    ledger = Ledger()
    for i in range(500):
        ledger.add(f"e{i}", i * 3)
    blob = bytes(range(256)) * 4096  # 1 MiB

    ready = os.environ.get("ZOO_READY")
    if ready:
        with open(ready, "w") as f:
            f.write("ready\n")
    else:
        print("ready", flush=True)
    if os.environ.get("ZOO_CORRUPT") == "1":
        state["k7"][1] += 1

    signal.sigwait({signal.SIGTERM})

    if first[26] != (27, 111):
        failures.append(f"first values changed: {first[26]}")
    after = [next(gen) for _ in range(1000)]
    fresh = collatz_lengths(1001)
    want_after = [next(fresh) for _ in range(1000)]
    if after != want_after:
        failures.append("the generator does not continue where it was")
    if digest(state) != want_digest:
        failures.append("the dict state changed")
    if bump(0) != sum(range(100)):
        failures.append(f"closure counter is {bump(0)}")
    if ledger.total() != 3 * sum(range(500)) or len(ledger.entries) != 500:
        failures.append("the ledger changed")
    if blob != bytes(range(256)) * 4096:
        failures.append("the 1 MiB bytes object changed")

    for f in failures:
        print(f"FAIL: generator.py: {f}", file=sys.stderr)
    if failures:
        return 1
    print("PASS: generator.py", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
