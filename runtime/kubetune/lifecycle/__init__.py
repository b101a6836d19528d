"""The resource lifecycle, free of torch and of any Kubernetes client: status derived from observations.

The operator (children observed through the apiserver) and ``kubetune run`` (local processes and records) are two
executors of the same lifecycle; both call these functions, so the same observations give the same status:

- :mod:`.sources`: what an object reads and whether a referenced output is usable, still to come, or never coming;
- :mod:`.inputs`: acceptance, rejections and the status while an input is unresolved;
- :mod:`.runs`: how a one-shot run goes and ends (the state of a launcher or a process);
- :mod:`.finetunejob`, :mod:`.modelexport`, :mod:`.inferenceservice`: each kind's status derivation;
- :mod:`.outputs`: where a producer writes; :mod:`.conditions`: metav1 conditions; :mod:`.progress`: progress lines.
"""
