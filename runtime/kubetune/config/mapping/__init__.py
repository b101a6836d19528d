"""CR <-> runtime mappings, one module per kind, side by side: what each kind's pod runs and what `kubetune run`
runs with are the same functions.

- :mod:`.train`: FineTuneJob <-> RuntimeConfig (``runtime_config_from_finetunejob`` and its inverse for
  ``kubetune convert``);
- :mod:`.export`: ModelExport -> ExportConfig;
- :mod:`.serve`: InferenceService -> ServeConfig;
- :mod:`.defaults`: where a FineTuneJob's defaults differ from LLaMA-Factory's, as data.

All are pure apart from the resolve callbacks they are given, and torch-free (the operator imports them).
"""
