"""Pure render functions: a parent object (typed) in, child manifests (dicts) out. No I/O, no clock, no randomness."""
