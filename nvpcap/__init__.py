"""nvpcap: offline pcap forensics modelled on NeuVector's data plane."""

import os

__version__ = "0.1.0"

# One file is analysed on one core; parallelism comes from running files side by side. Without this, polars
# starts a thread per core (and an allocator arena per thread) just to write records.
os.environ.setdefault("POLARS_MAX_THREADS", "1")
