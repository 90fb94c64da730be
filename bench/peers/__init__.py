"""Peer servers for the benchmark: one file per I/O framework, one shared protocol module."""
