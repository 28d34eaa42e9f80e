"""Zoo workload: a python3 interpreter holding live state (a suspended generator, a
dict of lists, a closure, an object), blocked in sigwait() for SIGTERM; then it checks
that the state is intact and continues the generator.

The protocol of workloads/zoo.h: `--items` prints the number of items checked;
environment ZOO_READY (FIFO to write "ready\\n" to), ZOO_CORRUPT=N breaks item N after
ready; one "FAIL: generator.py: item N: ..." line per failed check, exit 1.
"""

import hashlib
import os
import signal
import sys

# The items, numbered as zoo.h wants them.
FIRST = 1  # the values the generator gave before ready
GENERATOR = 2  # it continues where it was
DICT = 3
CLOSURE = 4
LEDGER = 5
BLOB = 6
ITEMS = 6


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
    if sys.argv[1:] == ["--items"]:
        print(ITEMS)
        return 0
    try:
        corrupt = int(os.environ.get("ZOO_CORRUPT") or "0")
    except ValueError:
        corrupt = -1
    if not 0 <= corrupt <= ITEMS:
        print(f"ERROR: generator.py: ZOO_CORRUPT={os.environ.get('ZOO_CORRUPT')}, want 0..{ITEMS}",
              file=sys.stderr)
        return 2
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
    if corrupt == FIRST:
        first[26] = (27, 112)
    if corrupt == GENERATOR:
        next(gen)
    if corrupt == DICT:
        state["k7"][1] += 1
    if corrupt == CLOSURE:
        bump(1)
    if corrupt == LEDGER:
        ledger.add("extra", 0)
    if corrupt == BLOB:
        blob = blob[:-1] + b"x"

    signal.sigwait({signal.SIGTERM})

    if first[26] != (27, 111):
        failures.append((FIRST, f"first values changed: {first[26]}"))
    after = [next(gen) for _ in range(1000)]
    fresh = collatz_lengths(1001)
    want_after = [next(fresh) for _ in range(1000)]
    if after != want_after:
        failures.append((GENERATOR, "the generator does not continue where it was"))
    if digest(state) != want_digest:
        failures.append((DICT, "the dict state changed"))
    if bump(0) != sum(range(100)):
        failures.append((CLOSURE, f"closure counter is {bump(0)}"))
    if ledger.total() != 3 * sum(range(500)) or len(ledger.entries) != 500:
        failures.append((LEDGER, "the ledger changed"))
    if blob != bytes(range(256)) * 4096:
        failures.append((BLOB, "the 1 MiB bytes object changed"))

    for item, f in failures:
        print(f"FAIL: generator.py: item {item}: {f}", file=sys.stderr)
    if failures:
        return 1
    print("PASS: generator.py", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
