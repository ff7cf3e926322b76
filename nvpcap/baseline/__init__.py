"""Learn-mode baselines (NeuVector learning rules), replay checks against them, and exports."""
