"""Flow table: packets in, flows out (canonical 5-tuple, Zeek conn_state/history, NeuVector timeouts)."""
