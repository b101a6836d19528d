"""Model loading, adapters and quantization (runtime side; imports torch)."""
