"""Plain-Python training core: tokenizer, embedded base model, LoRA trainer, estimates. No Dagster."""
