"""Analysis: the roofline cost model, per-layer attribution, deployment planning, devices,
kernel and model validation, perplexity."""
