"""Condition types, reasons and phases: the constants status functions and tests share.

Reasons are CamelCase, as metav1 conditions require. A phase is derived from conditions for printer columns and
people; programs should read conditions.
"""

from __future__ import annotations

from enum import StrEnum


class ConditionType(StrEnum):
    ACCEPTED = "Accepted"
    INPUTS_READY = "InputsReady"
    SOURCE_READY = "SourceReady"
    MODEL_RESOLVED = "ModelResolved"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"
    DEPLOYMENT_AVAILABLE = "DeploymentAvailable"
    READY = "Ready"
    # kstatus health (sigs.k8s.io/cli-utils), on all three kinds: see kubetune.lifecycle.health
    RECONCILING = "Reconciling"
    STALLED = "Stalled"


class Reason(StrEnum):
    # acceptance
    SPEC_VALID = "SpecValid"
    INVALID_SPEC = "InvalidSpec"
    DATASET_NOT_FOUND = "DatasetNotFound"
    UNKNOWN_TEMPLATE = "UnknownTemplate"
    INVALID_EXTRA_ARGS = "InvalidExtraArgs"
    ADAPTER_BASE_MISMATCH = "AdapterBaseMismatch"
    # inputs and sources
    RESOLVED = "Resolved"
    WAITING_FOR_SOURCE = "WaitingForSource"
    SOURCE_FAILED = "SourceFailed"
    SOURCE_NOT_FOUND = "SourceNotFound"
    WRONG_ARTIFACT_TYPE = "WrongArtifactType"
    WAITING_FOR_SCORE = "WaitingForScore"
    SCORE_BELOW_MINIMUM = "ScoreBelowMinimum"
    # lifecycle
    CREATED = "Created"
    PENDING = "Pending"
    QUEUED = "Queued"
    RUNNING = "Running"
    RESTARTING = "Restarting"
    SUSPENDED = "Suspended"
    RESUMED = "Resumed"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    OUTPUT_MISSING = "OutputMissing"
    IN_PROGRESS = "InProgress"
    # serving
    DEPLOYING = "Deploying"
    SCALED_TO_ZERO = "ScaledToZero"
    MINIMUM_REPLICAS_AVAILABLE = "MinimumReplicasAvailable"
    MINIMUM_REPLICAS_UNAVAILABLE = "MinimumReplicasUnavailable"
    READY = "Ready"
    NOT_READY = "NotReady"


class FineTuneJobPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"


class ModelExportPhase(StrEnum):
    PENDING = "Pending"
    WAITING_FOR_SOURCE = "WaitingForSource"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class InferenceServicePhase(StrEnum):
    PENDING = "Pending"
    WAITING_FOR_MODEL = "WaitingForModel"
    DEPLOYING = "Deploying"
    READY = "Ready"
    FAILED = "Failed"
