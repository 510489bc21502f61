"""A tiny embedded model and quick training settings, shared by the tests that need a trained adapter."""

from __future__ import annotations

from gastown_ft.config import (
    ArtifactsConfig,
    DagsterConfig,
    EmbeddedModelConfig,
    Settings,
    TownConfig,
    TrainingConfig,
    load_settings,
    render_settings_toml,
)

TINY_BASE = EmbeddedModelConfig(
    vocab_size=600,
    hidden_size=64,
    intermediate_size=128,
    num_layers=2,
    num_heads=4,
    max_position_embeddings=512,
    pretrain_steps=20,
    pretrain_seq_len=128,
    pretrain_batch_size=8,
)


def tiny_settings(work, town, **training):
    cfg = Settings(
        town=TownConfig(root=town.root, claude_projects_dir=town.claude_projects_dir),
        artifacts=ArtifactsConfig(dir=work / "artifacts"),
        dagster=DagsterConfig(home=work / "dagster"),
        training=TrainingConfig(
            base_model="embedded",
            embedded=TINY_BASE,
            max_steps=16,
            batch_size=4,
            max_seq_len=256,
            checkpoint_every=8,
            lora_rank=4,
            lora_alpha=8,
            learning_rate=3e-3,
            **training,
        ),
    )
    path = work / "gastown-ft.toml"
    path.write_text(render_settings_toml(cfg))
    (work / "dagster").mkdir(exist_ok=True)
    return load_settings(path)
