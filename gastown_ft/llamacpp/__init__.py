"""llama.cpp (through llama-cpp-python) as a second engine beside transformers.

runtime.py loads GGUF files and runs the token loop both `serve` and the evaluation use; generate.py
is the evaluation's greedy generation over GGUF files; gguf_cache.py makes the evaluation's base and
merged tuned GGUF files, cached by fingerprint; quality.py measures the held-out loss of a GGUF
(what a quantization costs). Prompts are always rendered and tokenized by the Hugging Face tokenizer
beside the weights, so both engines see exactly the same token ids.
"""
