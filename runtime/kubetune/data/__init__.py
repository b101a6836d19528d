"""Training data: the dataset registry, row formats, chat templates, tokenization, packing and collators.

Import cost matters: this package imports ``datasets``/``transformers`` only inside the functions that need them,
so the pure parts (formats, templates' rendering) stay cheap to test and to use from the serving code.
"""
