"""People learned from the whole corpus and replaced with one `person-N` everywhere (identities.py).

Hand-made documents use invented people (Mara Quill, dennis, ...); the test on the shared samples
greps the real ones out of ../shared at run time and checks that none survives the scrub.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from gastown_ft.artifacts import ArtifactStore
from gastown_ft.config import ScrubConfig, Settings
from gastown_ft.corpus import stages
from gastown_ft.corpus.documents import Document, documents_to_table
from gastown_ft.corpus.identities import IdentityMap, learn_all
from gastown_ft.corpus.scrub import Scrubber

# One invented person in every form the corpus gives a person away in.
MARA_DOCS = [
    "$ cd /Users/maraq/gt/gastown && gt hook\nmaraq@Maras-MacBook-Pro gastown % bd ready",
    '{"id": "gt-a1", "assignee": "maraq", "owner": "mara.quill@quillmesh.io", "created_by": "Mara Quill"}',
    "Fix the refinery gate\n\nCo-Authored-By: Mara Quill <mara.quill@quillmesh.io>\n"
    "Signed-off-by: Mara Quill <mara.quill@quillmesh.io>",
    "notes live in ~/src/maraq/notes; build host maraq-mbp.local; USER=maraq; Mara's review is done",
    r'{"message": "see \"/home/maraq/gt\"\nAuthor: Mara Quill \u003cmara.quill@quillmesh.io\u003e"}',
]
MARA_FORMS = ("maraq", "mara", "quill", "mara.quill@quillmesh.io")


def scrub_all(docs: list[str], **build) -> tuple[IdentityMap, list[str]]:
    people = IdentityMap.build(learn_all(docs), **build)
    sc = Scrubber(identities=people)
    return people, [sc.scrub(d).text for d in docs]


def survivors(texts: list[str], names) -> list[str]:
    """Names that still occur as a whole word (any case) in any text."""
    joined = "\n".join(texts)
    return [n for n in names if re.search(rf"(?<![A-Za-z0-9]){re.escape(n)}(?![A-Za-z0-9])", joined, re.I)]


def person_placeholders(text: str) -> set[str]:
    return set(re.findall(r"person-\d+", text))


# ---- one person, every form ------------------------------------------------------------------------
def test_same_person_in_every_form_is_one_placeholder_in_every_document() -> None:
    people, out = scrub_all(MARA_DOCS)
    assert survivors(out, MARA_FORMS) == []
    placeholders = [person_placeholders(t) for t in out]
    assert all(len(p) == 1 for p in placeholders), out  # each document names one person ...
    assert len(set.union(*placeholders)) == 1  # ... and it is the same one in all of them
    ph = placeholders[0].pop()
    assert out[0] == f"$ cd /Users/{ph}/gt/gastown && gt hook\n{ph}@{ph}-MacBook-Pro gastown % bd ready"
    assert f'"owner": "{ph}"' in out[1] and f'"created_by": "{ph}"' in out[1]
    assert out[2].endswith(f"Co-Authored-By: {ph} <{ph}>\nSigned-off-by: {ph} <{ph}>")
    assert f"~/src/{ph}/notes" in out[3] and f"{ph}-mbp.local" in out[3]
    assert "<EMAIL" not in "".join(out) and "<USER" not in "".join(out)  # the person wins over per-doc tags
    assert people.people == 1


def test_placeholders_do_not_depend_on_document_order() -> None:
    docs = MARA_DOCS + ["/home/olwen/x", "Co-Authored-By: Ivo Brandt <ivo@brandt.dev>", "gastown/crew/dennis"]
    first, out = scrub_all(docs)
    shuffled = docs[:]
    random.Random(3).shuffle(shuffled)
    second, out2 = scrub_all(shuffled)
    assert first.everywhere == second.everywhere and first.fingerprint == second.fingerprint
    assert sorted(out) == sorted(out2)
    assert first.people == 4


def test_scrubbing_twice_changes_nothing_and_leaves_nothing_to_learn() -> None:
    people, out = scrub_all(MARA_DOCS)
    sc = Scrubber(identities=people)
    assert [sc.scrub(t).text for t in out] == out
    assert {e for e in learn_all(out) if e[0] != "handle"} == set()


# ---- crew members, the allow-list, polecats ------------------------------------------------------
CREW_DOCS = [
    '{"actor": "gastown/crew/dennis", "assignee": "gastown/crew/max", "type": "sling"}',
    "Co-Authored-By: dennis (crew) <dennis@crew.gastown.local>\nmax_tokens = max(a, b)  # --max-retries 3",
    "tmux attach -t gt-gastown-crew-max; cd ~/gt/gastown/crew/max && gt crew start max",
    "dennis reviewed it; gastown/polecats/nux and gastown/polecats/furiosa merged; polecat-Toast idles",
    '{"created_by": "gastown/polecats/nux", "assignee": "nux", "owner": "toast@polecats.gastown.gastown.local"}',
]


def test_crew_members_are_people_and_common_word_names_are_replaced_only_in_context() -> None:
    people, out = scrub_all(CREW_DOCS)
    joined = "\n".join(out)
    assert survivors(out, ["dennis"]) == []  # a distinctive name: everywhere
    assert "crew/max" not in joined and "crew-max" not in joined and "crew start max" not in joined
    assert "max_tokens = max(a, b)  # --max-retries 3" in joined  # `max` the word stays
    assert re.search(r"gastown/crew/person-\d+", joined)  # still an agent address roles.py can read
    assert people.as_stats() == {"people": 2, "names_everywhere": 1, "names_in_context": 1}


# A crew member `max` (a common word) and `dennis` (a distinctive name), then prose about them.
PROSE_PEOPLE = ["gastown/crew/max", "gastown/crew/dennis", "gastown/crew/debug"]
AS_A_PERSON = [
    ("@max can you rebase?", "@{max} can you rebase?"),
    ("LGTM, cc @max @debug", "LGTM, cc @{max} @{debug}"),
    ("Reassigned to max after the standup.", "Reassigned to {max} after the standup."),
    ("thanks, max!", "thanks, {max}!"),
    (
        "Crew workers (like dennis, max) have no patrol.",
        "Crew workers (like {dennis}, {max}) have no patrol.",
    ),
    ("max and dennis split the queue", "{max} and {dennis} split the queue"),
    (
        "I asked Max to review it; Max's branch is stale",
        "I asked {max} to review it; {max}'s branch is stale",
    ),
    ("then Debug takes the next bead", "then {debug} takes the next bead"),
]
AS_A_WORD = [
    "Max retries: 3. Debug prints stay off.",
    "Default polecat names: Mad Max theme; Claude Max subscription; Mad Max's fury",
    "raise the Max value per worker; with Max 3 retries",
    "  -l, --limit int          Max runs to query",
    "| Max backoff | 10 min |\n| Cruft | Debug prints |",
    "max_tokens = max(a, b)  # --max-retries 3, Max.x, the debug flag, max=4",
    "@debug(verbose=True)\ndef f(): ...",
    "pin the tool with npm i tool@max",
    "DEBUG=1 MAX_AGE=4 go test",
]


@pytest.mark.parametrize("text,expected", AS_A_PERSON)
def test_common_word_names_are_replaced_where_prose_names_a_person(text: str, expected: str) -> None:
    people = IdentityMap.build(learn_all(PROSE_PEOPLE))
    assert set(people.context) == {"max", "debug"} and "dennis" in people.everywhere
    ph = {n: people.context.get(n) or people.everywhere[n] for n in ("max", "dennis", "debug")}
    assert Scrubber(identities=people).scrub(text).text == expected.format(**ph)


@pytest.mark.parametrize("text", AS_A_WORD)
def test_common_word_names_stay_where_they_are_words(text: str) -> None:
    people = IdentityMap.build(learn_all(PROSE_PEOPLE))
    assert Scrubber(identities=people).scrub(text).text == text


def test_polecat_names_are_agent_handles_and_stay() -> None:
    people, out = scrub_all(CREW_DOCS)
    joined = "\n".join(out)
    for handle in ("polecats/nux", "polecats/furiosa", "polecat-Toast", '"assignee": "nux"'):
        assert handle in joined
    assert "nux" not in people.everywhere and "nux" not in people.context
    assert "toast" not in people.everywhere and "toast" not in people.context


def test_allow_listed_crew_member_is_kept() -> None:
    people, out = scrub_all(CREW_DOCS, keep=["Dennis"])
    joined = "\n".join(out)
    assert "gastown/crew/dennis" in joined and "dennis reviewed it" in joined
    assert "crew/max" not in joined  # the others are still scrubbed
    assert people.people == 1


def test_extra_names_are_scrubbed_everywhere() -> None:
    _, out = scrub_all(["clone github.com/quillmesh/gastown"], extra=["quillmesh"])
    assert out == ["clone github.com/person-1/gastown"]


# ---- what is not a person ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "- sender: who sent it\n- assignee: recipient\n",  # prose describing fields
        "Priority: 4,\n    Actor:       target,\n",  # Go source
        "Scans description lines for 'Owner: ' and 'Notify: ' prefixes",
        "## Author: see below\nAuthor: polecat/slit",
        "Co-Authored-By: Claude Opus 4.6 <noreply@anthropic.com>",
        "Co-Authored-By: contributor-name <their-email>",
        "Co-Authored-By: Your Name <you@example.com>",
        "internal/crew/manager.go and each crew member reviews a subsystem",
        "bd cook mol-polecat-work@4        # Specific major version",
        '{"assignee": "gastown/refinery", "created_by": "mayor", "actor": "deacon", "owner": "root"}',
        "mail mayor@hq.gastown.local and witness@gastown.gastown.local; logo@2x.png; git@github.com:a/b",
        "/home/user/project and /Users/me/x and /home/runner/work",
    ],
)
def test_no_person_is_learned_from(text: str) -> None:
    assert {e for e in learn_all([text]) if e[0] != "handle"} == set()


# ---- the stage: two passes, reuse ------------------------------------------------------------------
def _raw(store: ArtifactStore, source: str, texts: list[str]) -> None:
    docs = [
        Document(source=source, kind="export", path=f"gastown/.beads/{source}.jsonl", text=t, key=f"k{i}")
        for i, t in enumerate(texts)
    ]
    store.write_table("raw", source, documents_to_table(docs))


def _scrubbed(store: ArtifactStore) -> list[str]:
    t = pq.read_table(store.path("corpus", "scrubbed_documents"))
    return [f"{r['text']}\n{r['title']}\n{r['path']}\n{r['meta']}\n{r['key']}" for r in t.to_pylist()]


def test_stage_learns_from_every_source_before_scrubbing_any(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    # The name is given away in one source (a home path in a transcript) and appears bare in another.
    _raw(store, "beads", ['{"created_by": "maraq", "assignee": "gastown/crew/dennis"}', "maraq closed gt-a1"])
    _raw(store, "transcripts", ["$ ls /Users/maraq/gt", "Co-Authored-By: Ivo Brandt <ivo@brandt.dev>"])
    cfg = ScrubConfig(keep_names=["dennis"])
    stats, outcomes = stages.scrub_stage(store, reuse=True, identities=cfg)
    out = _scrubbed(store)
    assert survivors(out, ["maraq", "ivo", "brandt"]) == [] and all(o.passed for o in outcomes)
    assert len(set.union(*(person_placeholders(t) for t in out))) == 2  # maraq, Ivo Brandt
    assert "gastown/crew/dennis" in out[0]  # allow-listed
    assert stats["identities"]["people"] == 2 and stats["by_kind"]["person"] == 5
    assert "maraq" not in repr(stats)  # the report holds counts, never names

    again, _ = stages.scrub_stage(store, reuse=True, identities=cfg)
    assert again["recomputed_documents"] == 0 and again["identities"]["sources_reused"] == 2

    # A new person anywhere: every row is scrubbed again with the new map, and the name is gone.
    _raw(store, "events", ['{"actor": "Olwen Hart", "type": "done"}'])
    third, _ = stages.scrub_stage(store, reuse=True, identities=cfg)
    assert third["identities"]["people"] == 3 and third["recomputed_documents"] == 5
    assert survivors(_scrubbed(store), ["maraq", "olwen", "hart", "brandt"]) == []


def test_learning_can_be_switched_off(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    _raw(store, "beads", ['{"created_by": "maraq"}', "$ ls /Users/maraq/gt"])
    stats, _ = stages.scrub_stage(store, reuse=False, identities=ScrubConfig(learn_names=False))
    out = _scrubbed(store)
    assert '"created_by": "maraq"' in out[0] and "/Users/<USER>/gt" in out[1]  # per-document only
    assert stats["identities"]["people"] == 0


def test_scrub_section_in_settings() -> None:
    s = Settings.model_validate({"scrub": {"keep_names": ["max"], "extra_names": ["quillmesh"]}})
    assert s.scrub.keep_names == ["max"] and s.scrub.learn_names is True
    assert Settings().scrub == ScrubConfig()


# ---- the shared samples: real home paths, emails and Co-Authored-By lines ------------------------
_HOME = re.compile(r"/(?:Users|home)/([A-Za-z0-9._-]+)")
_TRAILER = re.compile(r"(?:Co-Authored-By|Author):[ \t]*([^<\n\\]+?)[ \t]*<([^>\s\\]+@[^>\s\\]+)>", re.I)
_OWNER = re.compile(r'"owner": ?"([^"@\s]+@[^"\s]+)"')


def _sample_texts(root: Path) -> list[str]:
    texts = []
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.suffix not in (".jsonl", ".md", ".toml", ".tmpl", ".yaml", ".json", ".go"):
            continue
        text = p.read_text(encoding="utf-8", errors="replace")
        texts += [line for line in text.splitlines() if line.strip()] if p.suffix == ".jsonl" else [text]
    return texts


@pytest.mark.shared
def test_no_learned_name_survives_in_the_shared_samples(shared_samples: Path) -> None:
    texts = _sample_texts(shared_samples)
    joined = "\n".join(texts)
    people = IdentityMap.build(learn_all(texts))
    learned = {**people.everywhere, **people.context}

    # What a grep finds must be learned: home-path users, owners' emails, human co-authors.
    generic = {"user", "me", "runner", "root"}
    homes = {u.lower() for u in _HOME.findall(joined)} - generic
    owners = {e.lower() for e in _OWNER.findall(joined)}
    # Human authors and crew co-authors (`jack (crew) <jack@crew...>`, `Author: <rig>/crew/joe <...>`).
    coauthors = {
        n.removesuffix("(crew)").strip().rsplit("/crew/", 1)[-1].lower()
        for n, e in _TRAILER.findall(joined)
        if "noreply" not in e
    }
    assert homes and owners and coauthors  # the samples do hold such forms
    assert homes <= set(learned), homes - set(learned)
    assert owners <= set(learned), owners - set(learned)
    assert coauthors <= set(learned), coauthors - set(learned)

    sc = Scrubber(identities=people)
    out = [sc.scrub(t).text for t in texts]
    # Distinctive names are gone everywhere; names that are also words (`max`) from every identity
    # context, so learning again on the scrubbed text finds no one.
    everywhere = [n for n in people.everywhere if "@" not in n]
    assert survivors(out, everywhere) == []
    assert not any(e in o.lower() for o in out for e in people.everywhere if "@" in e)
    assert {e for e in learn_all(out) if e[0] != "handle"} == set()
    # Polecats and roles are kept.
    scrubbed = "\n".join(out)
    assert "gastown/polecats/nux" in scrubbed and "gastown/refinery" in scrubbed
