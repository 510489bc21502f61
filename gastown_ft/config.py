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

    @field_validator("split_ratios")
    @classmethod
    def _ratios_sum_to_one(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(x < 0 for x in v) or abs(sum(v) - 1.0) > 1e-6:
            raise ValueError("must be three non-negative numbers that sum to 1")
        return v


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


class TrainingConfig(_Section):
    base_model: str = Field(
        "embedded", description='"embedded" (built here, offline), a local model directory, or a hub id.'
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
    checkpoint_every: int = Field(
        50, ge=1, description="Save a resumable checkpoint every N optimizer steps."
    )
    seed: int = 0
    memory_budget_mb: int | None = Field(
        None, ge=64, description="Refuse to train above this estimated peak; default: available memory."
    )
    threads: int | None = Field(None, ge=1, description="torch threads; default: all cores.")


class EvaluationConfig(_Section):
    """Base against tuned: held-out loss, the Gas Town task suite, patrol suites, the general-text guard.

    (Owned by the evaluation work: fields are added here.)"""


class ExportConfig(_Section):
    """Merged safetensors, GGUF, Ollama Modelfile, model card, registry. (Owned by the export work.)"""


class ServeConfig(_Section):
    """`gastown-ft serve`: the OpenAI-compatible endpoint. (Owned by the serve work.)"""


class AutomationConfig(_Section):
    """Sensors, schedules, retrain threshold. (Owned by the automation work.)"""


class SwarmConfig(_Section):
    """Collaborative training with hivemind. (Owned by the swarm work.)"""


class Settings(_Section):
    town: TownConfig = Field(default_factory=TownConfig)
    corpus: CorpusConfig = Field(default_factory=CorpusConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    artifacts: ArtifactsConfig = Field(default_factory=ArtifactsConfig)
    dagster: DagsterConfig = Field(default_factory=DagsterConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    automation: AutomationConfig = Field(default_factory=AutomationConfig)
    swarm: SwarmConfig = Field(default_factory=SwarmConfig)
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
