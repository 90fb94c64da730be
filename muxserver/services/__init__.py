"""The built-in services that ``python -m muxserver`` runs: echo, chat and friends."""
