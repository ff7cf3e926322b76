"""Records: flow, alert and anomaly rows built from the flow table and the decoders' findings."""
