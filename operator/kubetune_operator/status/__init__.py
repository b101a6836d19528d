"""Pure status derivation: previous status + observed children + a timestamp in, the next status out."""
