"""Tests of muxserver.rpc: XDR, messages, record marking, programs, client, portmapper."""
