"""The ``make bench`` harness: peers, load clients and the runner (see bench/README.md)."""
