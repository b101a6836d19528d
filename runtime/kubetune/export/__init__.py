"""`kubetune export`: merge LoRA adapters into their base, cast, shard, optionally quantize, write the manifest."""
