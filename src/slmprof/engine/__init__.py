"""The engine: GGUF files, the model over the C core, tokenizers, sampling, quantization, the
numpy reference forward pass, the model registry and the one workload runner."""
