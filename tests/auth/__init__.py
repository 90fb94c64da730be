"""Tests of muxserver.auth."""
