"""Tests of muxserver.tls."""
