"""Benchmark servers built on muxserver itself (see bench/peers/cli.py for their contract)."""
