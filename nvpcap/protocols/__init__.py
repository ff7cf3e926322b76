"""Application protocols: one module per protocol (a probe that identifies it), registered in registry.py,
and the identification engine that offers each flow's first payload to the probes."""
