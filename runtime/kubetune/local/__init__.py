"""Local runs: `kubetune run` executes kubetune resources on this machine with the runtime the pods use."""
