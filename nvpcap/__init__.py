"""nvpcap: offline pcap forensics modelled on NeuVector's data plane."""

__version__ = "0.1.0"
