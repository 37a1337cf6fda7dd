#!/usr/bin/env python3
"""Fallback domain list for benches/load.sh when ../shared/bench/gen_domains.py is absent.

Writes COUNT distinct, reproducible names (one a line) on stdout: two to four syllables,
sometimes digits or a hyphen, a weighted TLD, sometimes a `www.`-style prefix. Simpler
than gen_domains.py (no real UT1 names) but of the same shape; never under .test, so the
bench origin's names (*.bench.test) stay out of every list.

  synth_domains.py COUNT [SEED]
"""
import random
import sys

TLDS = ["com"] * 46 + ["fr"] * 9 + ["net"] * 7 + ["org"] * 5 + ["ru"] * 4 + ["de"] * 4 + \
    ["co.uk", "co.uk", "info", "info", "xyz", "io", "nl", "es", "it", "be", "pl", "com.br", "jp"]
SYLL = ("ka ro mi to na be la vi de so lu pa ri mo ne ta co fi ga po se du chat blog shop "
        "net web cloud cam bet casino game tube vid free live hot best my go top pro zone hub").split()
SUBS = ["www", "m", "cdn", "static", "img", "api", "shop", "blog"]


def main():
    count = int(sys.argv[1])
    rng = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
    seen = set()
    out = sys.stdout
    while len(seen) < count:
        label = "".join(rng.choice(SYLL) for _ in range(rng.randint(2, 4)))
        if rng.random() < 0.3:
            label += str(rng.randint(1, 9999))
        if rng.random() < 0.15:
            label = label[: len(label) // 2] + "-" + label[len(label) // 2:]
        host = label[:63] + "." + rng.choice(TLDS)
        if rng.random() < 0.12:
            host = rng.choice(SUBS) + "." + host
        if host not in seen:
            seen.add(host)
            out.write(host + "\n")


if __name__ == "__main__":
    main()
