"""FineTuneJob: one training run (pt, sft, rm, ppo, dpo, kto or grpo) of a base model on one or more datasets."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from kubetune.api.base import CelRule, KubeModel
from kubetune.api.common import (
    ArtifactStatus,
    ChildRef,
    ModelSource,
    ObjectStatus,
    OutputSpec,
    Quantity,
    Scheduling,
    SecretKeyRef,
    Uri,
)
from kubetune.api.conditions import FineTuneJobPhase
from kubetune.api.evaluation import EvaluationSpec, EvaluationStatus


class Stage(StrEnum):
    PT = "pt"
    SFT = "sft"
    RM = "rm"
    PPO = "ppo"
    DPO = "dpo"
    KTO = "kto"
    GRPO = "grpo"


class Method(StrEnum):
    FULL = "full"
    FREEZE = "freeze"
    LORA = "lora"
    QLORA = "qlora"


class DatasetFormat(StrEnum):
    ALPACA = "alpaca"
    SHAREGPT = "sharegpt"
    OPENAI = "openai"
    TEXT = "text"


class PreferenceLoss(StrEnum):
    SIGMOID = "sigmoid"
    HINGE = "hinge"
    IPO = "ipo"
    ORPO = "orpo"
    SIMPO = "simpo"


class Strategy(StrEnum):
    DDP = "ddp"
    FSDP = "fsdp"
    DEEPSPEED = "deepspeed"


class Resume(StrEnum):
    AUTO = "auto"
    NEVER = "never"


class Launcher(StrEnum):
    PYTORCHJOB = "pytorchjob"
    JOB = "job"


class Precision(StrEnum):
    AUTO = "auto"
    BF16 = "bf16"
    FP16 = "fp16"
    FP32 = "fp32"


class BaseModelSpec(ModelSource):
    """The model to fine-tune."""

    template: str | None = Field(
        None,
        max_length=64,
        description="Chat template name (llama3, qwen, mistral, ...); omitted uses the tokenizer's own template.",
    )
    trust_remote_code: bool = Field(False, description="Allow model code shipped with the checkpoint to run.")


class DatasetColumns(KubeModel):
    """Which columns hold what (dataset_info.json `columns` semantics); unset keys use the format's default."""

    prompt: str | None = Field(None, max_length=128, description="alpaca: instruction column (default instruction).")
    query: str | None = Field(None, max_length=128, description="alpaca: input column (default input).")
    response: str | None = Field(None, max_length=128, description="alpaca: output column (default output).")
    history: str | None = Field(None, max_length=128, description="alpaca: earlier turns as [[q, a], ...].")
    messages: str | None = Field(
        None, max_length=128, description="sharegpt/openai: the message list (default conversations/messages)."
    )
    system: str | None = Field(None, max_length=128, description="Column holding the system prompt.")
    tools: str | None = Field(None, max_length=128, description="Column holding the tool descriptions (JSON).")
    chosen: str | None = Field(None, max_length=128, description="Preference data: the preferred answer.")
    rejected: str | None = Field(None, max_length=128, description="Preference data: the dispreferred answer.")
    kto_tag: str | None = Field(None, max_length=128, description="KTO data: boolean column, true = desirable.")
    text: str | None = Field(None, max_length=128, description="text format: the text column (default text).")
    images: str | None = Field(
        None, max_length=128,
        description="sft with a vision-language model: column listing image paths, one <image> placeholder each.",
    )


class DatasetTags(KubeModel):
    """sharegpt role and content keys (dataset_info.json `tags`)."""

    role_tag: str | None = Field(None, max_length=64, description="Key holding the role (default from).")
    content_tag: str | None = Field(None, max_length=64, description="Key holding the text (default value).")
    user_tag: str | None = Field(None, max_length=64, description="Role value of the user (default human).")
    assistant_tag: str | None = Field(None, max_length=64, description="Role value of the model (default gpt).")
    observation_tag: str | None = Field(
        None, max_length=64, description="Role value of tool results (default observation)."
    )
    function_tag: str | None = Field(
        None, max_length=64, description="Role value of tool calls (default function_call)."
    )
    system_tag: str | None = Field(None, max_length=64, description="Role value of the system (default system).")


class DatasetSpec(KubeModel):
    """One dataset. Several datasets are mixed as configured under training.mixStrategy."""

    uri: Uri | None = Field(None, description="File or folder (json, jsonl, csv, parquet, txt) or hf:// dataset.")
    name: str | None = Field(
        None,
        max_length=128,
        description="A dataset registered in dataset_info.json under registryUri (LLaMA-Factory registry).",
    )
    registry_uri: Uri | None = Field(
        None, description="Folder holding dataset_info.json; used with name."
    )
    format: DatasetFormat = Field(DatasetFormat.ALPACA, description="Row layout: alpaca, sharegpt, openai or text.")
    ranking: bool = Field(False, description="Rows are preference pairs (chosen/rejected): needed by rm and dpo.")
    columns: DatasetColumns | None = Field(None, description="Column mapping.")
    tags: DatasetTags | None = Field(None, description="sharegpt role/content keys.")
    split: str = Field("train", max_length=64, description="Split to read.")
    num_samples: int | None = Field(None, ge=1, description="Take this many rows (sampling with repetition if more).")
    revision: str | None = Field(None, max_length=256, description="Revision for hf:// datasets.")
    credentials_secret_ref: SecretKeyRef | None = Field(None, description="Secret with credentials for the data.")

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            "has(self.uri) != has(self.name)",
            "set exactly one of uri (a file, folder or hf:// dataset) or name (a dataset_info.json entry)",
        ),
        CelRule("!has(self.name) || has(self.registryUri)", "name needs registryUri", ".registryUri"),
    )


class LoraSpec(KubeModel):
    """LoRA adapter settings (method lora or qlora)."""

    rank: int = Field(8, ge=1, le=1024, description="Adapter rank r.")
    alpha: int | None = Field(None, ge=1, le=4096, description="Scaling alpha; default 2 x rank.")
    dropout: float = Field(0.0, ge=0.0, le=1.0, description="Dropout on the adapter input.")
    target: list[str] = Field(
        default_factory=lambda: ["all"],
        max_length=64,
        description="Module names to adapt, or [all] for every linear layer except the output head.",
    )
    additional_target: list[str] | None = Field(
        None, max_length=64, description="Extra modules trained fully and saved with the adapter (e.g. embed_tokens)."
    )
    rslora: bool = Field(False, description="Rank-stabilised scaling alpha / sqrt(r).")
    dora: bool = Field(False, description="Weight-decomposed LoRA (DoRA).")
    pissa: bool = Field(False, description="Initialise from principal singular vectors (PiSSA).")
    loraplus_lr_ratio: float | None = Field(
        None, ge=0.0, le=1024.0, description="LoRA+: learning-rate ratio of B over A (16 is typical)."
    )


class FreezeSpec(KubeModel):
    """Which parts train with method freeze; everything else stays frozen."""

    trainable_layers: int = Field(
        2, ge=-1024, le=1024, description="Train the last n layers (positive) or the first n (negative)."
    )
    trainable_modules: list[str] = Field(
        default_factory=lambda: ["all"], max_length=64, description="Module names within those layers, or [all]."
    )
    extra_modules: list[str] | None = Field(
        None, max_length=64, description="Modules outside the layers to train too (e.g. embed_tokens, norm)."
    )


class QuantizationSpec(KubeModel):
    """Quantization of the frozen base for QLoRA (bitsandbytes)."""

    bits: Literal[4, 8] = Field(4, description="4 or 8.")
    type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type: nf4 or fp4.")
    double_quant: bool = Field(True, description="Quantize the quantization constants too.")


class PreferenceSpec(KubeModel):
    """DPO-family settings (stage dpo)."""

    beta: float = Field(0.1, gt=0.0, le=100.0, description="Strength of the KL penalty to the reference model.")
    loss: PreferenceLoss = Field(PreferenceLoss.SIGMOID, description="sigmoid, hinge, ipo, orpo or simpo.")
    ftx: float = Field(0.0, ge=0.0, le=100.0, description="Weight of an extra SFT loss on the chosen answers.")
    label_smoothing: float = Field(
        0.0, ge=0.0, le=0.5, description="Robust DPO label smoothing, below 0.5 (sigmoid and simpo losses)."
    )
    simpo_gamma: float = Field(0.5, ge=0.0, le=100.0, description="SimPO target reward margin.")
    ref_model: ModelSource | None = Field(
        None, description="Reference model; default is the frozen base (adapters disabled). Not used by orpo/simpo."
    )

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            "!has(self.refModel) || !(self.loss in ['orpo', 'simpo'])",
            "refModel cannot be used with loss orpo or simpo: they need no reference model",
            ".refModel",
        ),
        CelRule(
            "!has(self.labelSmoothing) || self.labelSmoothing < 0.5",
            "labelSmoothing must be below 0.5 (robust DPO divides by 1 - 2 x labelSmoothing)",
            ".labelSmoothing",
        ),
        CelRule(
            "!has(self.labelSmoothing) || self.labelSmoothing == 0.0 || self.loss in ['sigmoid', 'simpo']",
            "labelSmoothing only applies to loss sigmoid or simpo",
            ".labelSmoothing",
        ),
    )


class KtoSpec(KubeModel):
    """KTO settings (stage kto)."""

    beta: float = Field(0.1, gt=0.0, le=100.0, description="KL penalty strength.")
    desirable_weight: float = Field(1.0, gt=0.0, le=100.0, description="Loss weight of desirable examples.")
    undesirable_weight: float = Field(1.0, gt=0.0, le=100.0, description="Loss weight of undesirable examples.")
    ftx: float = Field(0.0, ge=0.0, le=100.0, description="Weight of an extra SFT loss on desirable answers.")


class RewardModelSpec(ModelSource):
    """The reward model for PPO: a stage rm output (a LoRA reward adapter on the same base, or a full reward
    model) given by uri or fineTuneJobRef/modelExportRef, or an HTTP scorer."""

    url: str | None = Field(
        None,
        max_length=2048,
        pattern=r"^https?://.+$",
        description="HTTP scorer: POST {messages} returns {reward}. Used instead of a model.",
    )

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            "[has(self.uri), has(self.fineTuneJobRef), has(self.modelExportRef), has(self.url)]"
            ".filter(x, x).size() == 1",
            "exactly one of uri, fineTuneJobRef, modelExportRef or url must be set",
        ),
    )


class PpoSpec(KubeModel):
    """PPO settings (stage ppo)."""

    reward_model: RewardModelSpec | None = Field(None, description="Where rewards come from (required).")
    epochs: int = Field(4, ge=1, le=100, description="PPO epochs per rollout batch.")
    buffer_size: int = Field(
        1, ge=1, le=1024, description="Rollout size in optimizer steps: batch x accumulation x bufferSize prompts."
    )
    max_new_tokens: int = Field(128, ge=1, le=65536, description="Length of generated responses.")
    kl_coef: float = Field(0.05, ge=0.0, le=100.0, description="KL penalty to the reference policy (initial value).")
    whiten_rewards: bool = Field(False, description="Normalise rewards per batch.")
    score_norm: bool = Field(False, description="Normalise scores with running statistics.")
    target_kl: float | None = Field(
        None, gt=0.0, le=1000.0, description="Target KL of the adaptive KL controller; unset keeps klCoef fixed."
    )


class GrpoLoss(StrEnum):
    GRPO = "grpo"
    DR_GRPO = "dr_grpo"
    DAPO = "dapo"
    BNPO = "bnpo"


class RewardScaling(StrEnum):
    GROUP = "group"
    BATCH = "batch"
    NONE = "none"


class GrpoSpec(KubeModel):
    """GRPO settings (stage grpo, required there): the rewards, the group size and the loss."""

    rewards: list[Annotated[str, Field(min_length=1, max_length=2048)]] = Field(
        min_length=1,
        max_length=16,
        description="Reward functions: exact_match (the answer equals the dataset's response), format (the "
        "completion matches formatPattern), an http(s) scorer URL (POST {messages} returns {reward}), or a Python "
        "import path (module:function) available in the training image.",
    )
    reward_weights: list[float] | None = Field(
        None, max_length=16, description="Weight per reward, in order; default 1 each."
    )
    format_pattern: str | None = Field(
        None, max_length=1024, description="Regular expression of the format reward (default <think>...</think> "
        "<answer>...</answer>)."
    )
    reward_timeout_seconds: float = Field(60.0, gt=0.0, le=3600.0, description="Time an HTTP scorer may take.")
    num_generations: int = Field(8, ge=2, le=1024, description="Completions sampled per prompt (the group).")
    max_new_tokens: int = Field(256, ge=1, le=65536, description="Length limit of sampled completions.")
    temperature: float = Field(1.0, gt=0.0, le=10.0, description="Sampling temperature of the completions.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass of the completions.")
    beta: float = Field(0.0, ge=0.0, le=100.0, description="KL penalty to the reference policy; 0 loads none.")
    epsilon: float = Field(0.2, gt=0.0, lt=1.0, description="Clipping range of the importance ratio.")
    num_iterations: int = Field(1, ge=1, le=64, description="Optimisation passes over each generated batch.")
    loss_type: GrpoLoss = Field(GrpoLoss.DAPO, description="Token averaging: grpo, dr_grpo, dapo or bnpo.")
    scale_rewards: RewardScaling = Field(
        RewardScaling.GROUP, description="Divide advantages by the reward std of the group, the batch, or not at all."
    )

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule("self.rewards.all(r, r in ['exact_match', 'format'] || r.startsWith('http://') || "
                "r.startsWith('https://') || r.matches('^[A-Za-z_][A-Za-z0-9_]*([.][A-Za-z_][A-Za-z0-9_]*)*"
                "[.:][A-Za-z_][A-Za-z0-9_]*$'))",
                "each reward is exact_match, format, an http(s) URL or a Python import path (module:function)",
                ".rewards"),
        CelRule("!has(self.rewardWeights) || size(self.rewardWeights) == size(self.rewards)",
                "rewardWeights needs one weight per reward", ".rewardWeights"),
        CelRule("!has(self.formatPattern) || self.rewards.exists(r, r == 'format')",
                "formatPattern is only used by the format reward", ".formatPattern"),
    )


class TrainingSpec(KubeModel):
    """Optimisation and data-processing hyper-parameters."""

    epochs: float = Field(3.0, gt=0.0, le=10000.0, description="Passes over the training data.")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps (overrides epochs).")
    learning_rate: float = Field(5.0e-5, gt=0.0, le=1.0, description="Peak learning rate.")
    lr_scheduler: Literal[
        "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
        "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "warmup_stable_decay",
    ] = Field("cosine", description="Learning-rate schedule.")
    warmup_ratio: float = Field(0.0, ge=0.0, le=1.0, description="Fraction of steps spent warming up.")
    weight_decay: float = Field(0.0, ge=0.0, le=10.0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, ge=0.0, description="Gradient clipping norm (0 disables).")
    per_device_batch_size: int = Field(1, ge=1, le=4096, description="Sequences per device per micro-step.")
    gradient_accumulation_steps: int = Field(8, ge=1, le=4096, description="Micro-steps per optimizer step.")
    cutoff_len: int = Field(2048, ge=8, le=1048576, description="Maximum tokens per example after tokenization.")
    packing: bool | None = Field(
        None, description="Concatenate and chunk examples; default true for pt, false otherwise."
    )
    neat_packing: bool = Field(
        False, description="Padding-free packing where packed examples never attend to each other."
    )
    train_on_prompt: bool = Field(False, description="Also compute the loss on prompt tokens.")
    mask_history: bool = Field(False, description="Train only on the last turn of multi-turn conversations.")
    val_size: float = Field(0.0, ge=0.0, le=0.9, description="Fraction held out for evaluation.")
    max_samples: int | None = Field(None, ge=1, description="Use at most this many rows per dataset.")
    mix_strategy: Literal["concat", "interleave_under", "interleave_over"] = Field(
        "concat", description="How several datasets are combined."
    )
    interleave_probs: list[float] | None = Field(
        None, max_length=16, description="Sampling probabilities per dataset for interleave strategies."
    )
    save_steps: int = Field(500, ge=1, description="Write a checkpoint every n optimizer steps.")
    save_total_limit: int | None = Field(3, ge=1, description="Keep at most n checkpoints.")
    logging_steps: int = Field(10, ge=1, description="Log metrics every n optimizer steps.")
    eval_steps: int | None = Field(None, ge=1, description="Evaluate every n steps (needs valSize).")
    seed: int = Field(42, ge=0, description="Random seed.")
    precision: Precision = Field(Precision.AUTO, description="auto picks bf16 on GPUs that have it, else fp32.")
    gradient_checkpointing: bool = Field(True, description="Recompute activations to save memory.")
    optimizer: str = Field("adamw_torch", max_length=64, description="Optimizer name as transformers knows it.")


class DistributedSpec(KubeModel):
    """How the processes share the work."""

    strategy: Strategy = Field(Strategy.DDP, description="ddp, fsdp or deepspeed.")
    zero_stage: Literal[2, 3] | None = Field(None, description="DeepSpeed ZeRO stage 2 or 3.")
    offload: bool = Field(False, description="Offload optimizer state (and ZeRO-3 parameters) to CPU memory.")

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            "!has(self.zeroStage) || self.strategy == 'deepspeed'",
            "zeroStage applies only to strategy deepspeed",
            ".zeroStage",
        ),
    )


class TrainingResources(KubeModel):
    """Nodes, GPUs and container resources of the training pods."""

    nodes: int = Field(1, ge=1, le=1024, description="Pods (nodes) in the job: one master and nodes-1 workers.")
    gpus_per_node: int = Field(0, ge=0, le=64, description="GPUs per pod; also the torchrun nproc_per_node.")
    gpu_resource_name: str = Field("nvidia.com/gpu", max_length=253, description="Extended resource of a GPU.")
    requests: dict[str, Quantity] | None = Field(None, max_length=16, description="Container resource requests.")
    limits: dict[str, Quantity] | None = Field(None, max_length=16, description="Container resource limits.")


class RunPolicy(KubeModel):
    """Restart and lifetime policy of the training job."""

    backoff_limit: int = Field(3, ge=0, le=1000, description="Pod restarts allowed before the job fails.")
    active_deadline_seconds: int | None = Field(None, ge=1, description="Fail the job after this many seconds.")
    ttl_seconds_after_finished: int | None = Field(
        None, ge=0, description="Delete the launcher job this long after it finishes (the FineTuneJob stays)."
    )
    suspend: bool = Field(False, description="Suspend the job (pods deleted); unset to resume. The one mutable field.")


class FineTuneJobSpec(Scheduling):
    """What to train, on what, how, and where to write it."""

    model: BaseModelSpec = Field(description="The base model.")
    datasets: list[DatasetSpec] = Field(min_length=1, max_length=16, description="Training data, mixed in order.")
    eval_datasets: list[DatasetSpec] | None = Field(
        None, max_length=16, description="Separate evaluation data (instead of valSize)."
    )
    stage: Stage = Field(Stage.SFT, description="pt, sft, rm, ppo, dpo, kto or grpo.")
    method: Method = Field(Method.LORA, description="full, freeze, lora or qlora.")
    lora: LoraSpec | None = Field(None, description="LoRA settings; defaults apply when omitted.")
    freeze: FreezeSpec | None = Field(None, description="Freeze settings; defaults apply when omitted.")
    quantization: QuantizationSpec | None = Field(None, description="Quantized base for qlora (required there).")
    preference: PreferenceSpec | None = Field(None, description="DPO-family settings (stage dpo).")
    kto: KtoSpec | None = Field(None, description="KTO settings (stage kto).")
    ppo: PpoSpec | None = Field(None, description="PPO settings (stage ppo, required there).")
    grpo: GrpoSpec | None = Field(None, description="GRPO settings (stage grpo, required there).")
    training: TrainingSpec = Field(default_factory=TrainingSpec, description="Hyper-parameters.")
    extra_args: dict[str, Any] | None = Field(
        None,
        max_length=128,
        description="Any further runtime (LLaMA-Factory-style) key, e.g. neftune_noise_alpha; checked before launch.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    distributed: DistributedSpec = Field(default_factory=DistributedSpec, description="Parallelism strategy.")
    resources: TrainingResources = Field(default_factory=TrainingResources, description="Pods and resources.")
    output: OutputSpec = Field(description="Where the adapter or model is written.")
    resume: Resume = Field(
        Resume.AUTO, description="auto restarts from the last complete checkpoint; never starts over."
    )
    run_policy: RunPolicy = Field(default_factory=RunPolicy, description="Restarts, deadline and suspension.")
    launcher: Launcher = Field(
        Launcher.PYTORCHJOB, description="pytorchjob (Kubeflow training-operator) or job (indexed Job + Service)."
    )
    evaluation: EvaluationSpec | None = Field(
        None, description="Benchmarks scored after training (and on the base model before, with baseline)."
    )

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule("self.method != 'qlora' || has(self.quantization)",
                "quantization is required when method is qlora", ".quantization"),
        CelRule("!has(self.quantization) || self.method == 'qlora'",
                "quantization is only used with method qlora", ".quantization"),
        CelRule("!has(self.lora) || self.method in ['lora', 'qlora']",
                "lora is only used with method lora or qlora", ".lora"),
        CelRule("!has(self.freeze) || self.method == 'freeze'",
                "freeze is only used with method freeze", ".freeze"),
        CelRule("!has(self.preference) || self.stage == 'dpo'",
                "preference is only used with stage dpo", ".preference"),
        CelRule("!has(self.kto) || self.stage == 'kto'", "kto is only used with stage kto", ".kto"),
        CelRule("!has(self.ppo) || self.stage == 'ppo'", "ppo is only used with stage ppo", ".ppo"),
        CelRule("self.stage != 'ppo' || (has(self.ppo) && has(self.ppo.rewardModel))",
                "stage ppo needs ppo.rewardModel (a reward model uri, fineTuneJobRef, modelExportRef or url)",
                ".ppo"),
        CelRule("self.stage != 'ppo' || (self.resources.nodes == 1 && self.resources.gpusPerNode <= 1)",
                "stage ppo runs in one process: resources.nodes 1 and gpusPerNode at most 1", ".resources"),
        CelRule("!has(self.grpo) || self.stage == 'grpo'", "grpo is only used with stage grpo", ".grpo"),
        CelRule("self.stage != 'grpo' || has(self.grpo)",
                "stage grpo needs grpo.rewards (exact_match, format, an http(s) URL or module:function)", ".grpo"),
        CelRule("self.stage != 'grpo' || !has(self.grpo) || (self.training.perDeviceBatchSize * "
                "self.training.gradientAccumulationSteps) % self.grpo.numGenerations == 0",
                "stage grpo needs training.perDeviceBatchSize x gradientAccumulationSteps to be a multiple of "
                "grpo.numGenerations (each prompt's completions form one group)", ".training"),
        CelRule("!(self.stage in ['rm', 'dpo']) || self.datasets.all(d, d.ranking)",
                "stage rm and dpo need preference data: set ranking: true on every dataset", ".datasets"),
        CelRule("self.stage != 'kto' || self.training.perDeviceBatchSize >= 2",
                "stage kto needs training.perDeviceBatchSize of at least 2 (its KL term is estimated within a batch)",
                ".training.perDeviceBatchSize"),
        CelRule("self.stage != 'kto' || self.datasets.all(d, has(d.name) || "
                "(has(d.columns) && has(d.columns.ktoTag)))",
                "stage kto needs a kto_tag column: set columns.ktoTag on every dataset", ".datasets"),
        CelRule("self.resources.nodes == 1 || self.resources.gpusPerNode > 0 || self.distributed.strategy == 'ddp'",
                "fsdp and deepspeed across several nodes need gpusPerNode > 0", ".distributed"),
        CelRule("!has(self.training.interleaveProbs) || "
                "size(self.training.interleaveProbs) == size(self.datasets)",
                "training.interleaveProbs needs one probability per dataset", ".training.interleaveProbs"),
    )


class Progress(KubeModel):
    """Training progress reported by rank 0 while the job runs."""

    step: int = Field(0, ge=0, description="Optimizer steps done.")
    total_steps: int | None = Field(None, ge=0, description="Optimizer steps planned.")
    percent: int | None = Field(None, ge=0, le=100, description="step / totalSteps in percent.")
    loss: str | None = Field(None, max_length=32, description="Latest training loss.")
    epoch: str | None = Field(None, max_length=32, description="Fractional epoch.")
    eta_seconds: int | None = Field(None, ge=0, description="Estimated seconds to completion.")
    updated_at: str | None = Field(
        None, description="When this was reported.", json_schema_extra={"format": "date-time"}
    )


class FineTuneJobStatus(ObjectStatus):
    """Observed state of a FineTuneJob."""

    phase: FineTuneJobPhase | None = Field(None, description="Pending, Running, Succeeded, Failed or Suspended.")
    training_job: ChildRef | None = Field(None, description="The PyTorchJob or Job running the training.")
    progress: Progress | None = Field(None, description="Latest progress report.")
    latest_checkpoint: str | None = Field(None, max_length=2048, description="Last complete checkpoint.")
    restarts: int = Field(0, ge=0, description="How often the training restarted.")
    start_time: str | None = Field(
        None, description="When training started.", json_schema_extra={"format": "date-time"}
    )
    completion_time: str | None = Field(
        None, description="When training finished.", json_schema_extra={"format": "date-time"}
    )
    output: ArtifactStatus | None = Field(None, description="The artifact written, once the job succeeded.")
    evaluation: EvaluationStatus | None = Field(None, description="Benchmark scores (spec.evaluation).")


class FineTuneJob(KubeModel):
    """A fine-tuning run: the operator turns it into a PyTorchJob (or an indexed Job) running the kubetune runtime."""

    api_version: str = Field("kubetune.io/v1alpha1", description="kubetune.io/v1alpha1")
    kind: str = Field("FineTuneJob", description="FineTuneJob")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Standard object metadata.")
    spec: FineTuneJobSpec = Field(description="Desired training run; immutable except runPolicy.suspend.")
    status: FineTuneJobStatus | None = Field(None, description="Observed state, written by the operator.")
