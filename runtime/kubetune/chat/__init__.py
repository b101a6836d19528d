"""`kubetune chat`: talk to a model in the terminal through the serving stack's OpenAI layer and engine."""
