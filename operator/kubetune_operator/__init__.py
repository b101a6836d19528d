"""The kubetune operator: reconciles FineTuneJob, ModelExport and InferenceService (kopf)."""
