"""muxserver: a select-based multiplexing server framework.

One reactor thread owns every socket and an explicit table of partially finished requests;
sans-IO handlers turn bytes into requests; a dispatch strategy decides where each request's
service runs.
"""

__version__ = "0.1.0"
