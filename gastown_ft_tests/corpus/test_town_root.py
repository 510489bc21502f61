"""The town root in the corpus: written as `~/gt` wherever the town lives, so one town gives one corpus."""

from __future__ import annotations

from gastown_ft.config import CorpusConfig, TownConfig
from gastown_ft.corpus import stages
from gastown_ft.corpus.documents import SOURCES
from gastown_ft.corpus.scrub import Scrubber
from gastown_ft.demo.town import build_demo_town
from gastown_ft.training.inputs import load_split_examples


def test_town_root_spellings_become_the_default_root():
    s = Scrubber(town_roots=["/srv/towns/alpha", "/home/alice/gt"])
    out = s.scrub(
        "cwd /srv/towns/alpha/ledger/witness; project -srv-towns-alpha-ledger-witness; "
        "cd /home/alice/gt && ls /home/alice/notes"
    )
    assert out.text == (
        "cwd ~/gt/ledger/witness; project --gt-ledger-witness; cd ~/gt && ls /home/<USER>/notes"
    )
    assert out.counts["town_root"] == 3


def test_other_paths_that_share_a_prefix_are_left_alone():
    s = Scrubber(town_roots=["/srv/towns/alpha"])
    text = "/srv/towns/alpha2/x /var/srv/towns/alpha/x /srv/towns/alpha-old -srv-towns-alpha2-x"
    assert s.scrub(text).text == text


def _train_ids(work, name):
    town = build_demo_town(work / name / "deeper" / "town", seed=7)
    store = stages.ArtifactStore(work / name / "artifacts")
    tc = TownConfig(root=town.root, claude_projects_dir=town.claude_projects_dir)
    for src in SOURCES:
        stages.read_stage(tc, store, src)
    stages.scrub_stage(store, town_root=town.root)
    stages.pairs_stage(store, CorpusConfig())
    stages.splits_stage(store, CorpusConfig())
    train = load_split_examples(store, "train")
    return [ex["example_id"] for ex in train], str([ex["messages"] for ex in train]), str(town.root)


def test_one_town_gives_one_corpus_wherever_it_lives(tmp_path):
    ids_a, text_a, root_a = _train_ids(tmp_path, "a")
    ids_b, text_b, root_b = _train_ids(tmp_path, "b-somewhere-else")
    assert root_a not in text_a and root_b not in text_b
    assert "~/gt/" in text_a  # the role prompts and tool calls do name paths in the town
    # the same examples in the same order: the same batches, the same model
    assert ids_a == ids_b
