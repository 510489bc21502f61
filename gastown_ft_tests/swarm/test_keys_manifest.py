"""The swarm key, the access tokens made with it, and the manifest check (no network)."""

from __future__ import annotations

import asyncio
import dataclasses
import stat

import pytest

from gastown_ft.errors import GastownFTError
from gastown_ft.swarm.auth import SwarmKeyAuthorizer
from gastown_ft.swarm.keys import generate_key_file, load_key
from gastown_ft.swarm.manifest import RunManifest, check_compatible


def test_key_file_is_private_and_round_trips(tmp_path, monkeypatch):
    monkeypatch.delenv("GASTOWN_FT_SWARM_KEY", raising=False)
    path = tmp_path / "k" / "swarm.key"
    key = generate_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(path) == key
    with pytest.raises(GastownFTError, match="exists already"):
        generate_key_file(path)
    path.write_text("not hex")
    with pytest.raises(GastownFTError, match="not 32 hex-encoded bytes"):
        load_key(path)
    monkeypatch.setenv("GASTOWN_FT_SWARM_KEY", key.secret.hex())
    assert load_key(None) == key


def test_tokens_of_another_key_are_refused(tmp_path):
    mine = generate_key_file(tmp_path / "a")
    theirs = generate_key_file(tmp_path / "b")
    ours, stranger = SwarmKeyAuthorizer(mine), SwarmKeyAuthorizer(theirs)
    token = asyncio.run(ours.get_token())
    assert ours.is_token_valid(token)
    assert not stranger.is_token_valid(token)
    forged = asyncio.run(stranger.get_token())
    forged.username = token.username  # the key id is public; the tag is what counts
    assert not ours.is_token_valid(forged)
    token.expiration_time = "2000-01-01T00:00:00+00:00"  # tampered: the tag no longer matches
    assert not ours.is_token_valid(token)


def test_manifest_mismatch_names_what_differs_with_short_hashes():
    run = RunManifest(
        run_id="r1",
        corpus_version="a" * 64,
        base_model="b" * 64,
        plan="c" * 64,
        project="0.1.0",
        target_batch_size=16,
        total_steps=10,
        compression="float16",
        average_state_every=1,
    )
    check_compatible(run, run)
    mine = dataclasses.replace(run, corpus_version="d" * 64, compression="none")
    with pytest.raises(GastownFTError) as e:
        check_compatible(mine, run)
    message = e.value.args[0]  # the error line; the fix goes in the hint
    assert "\n" not in message
    assert "corpus version (this machine dddddddddddd, the run aaaaaaaaaaaa)" in message
    assert "swarm.compression (this machine none, the run float16)" in message
    assert "base model" not in message
    assert "materialize corpus_splits" in e.value.hint and "copy the swarm settings" in e.value.hint
    assert RunManifest.from_bytes(run.to_bytes()) == run
