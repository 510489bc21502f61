"""A rig's everyday backlog: many ordinary beads, so the demo corpus has enough bead work to learn from.

The story beads of `demo/beads.py` are few and hand-written; a real rig files dozens of bugs, features,
tasks and chores a week. This draws them from per-rig vocabularies (a Python bookkeeping app, a Go
webhook relay): titles, one-line descriptions, priorities weighted as real trackers are (P2 most),
labels, epics with children, blockers, claims by polecats and crew, and closes with real-shaped
reasons. Deterministic for a given World seed; drawn from its own random stream.
"""

from __future__ import annotations

from datetime import timedelta

from gastown_ft.demo.beads import Bead
from gastown_ft.demo.world import RigSpec, World

_VOCAB: dict[str, dict[str, list[str]]] = {
    "python": {
        "component": [
            "CSV importer",
            "OFX parser",
            "money rounding",
            "budget report",
            "currency table",
            "reconcile command",
            "tag index",
            "search filter",
            "monthly summary",
            "split transactions",
            "payee matcher",
            "ledger CLI",
            "export to JSON",
            "account tree",
            "rules engine",
        ],
        "thing": [
            "negative amounts",
            "quoted payees",
            "empty memo fields",
            "dates before 1970",
            "non-UTF-8 files",
            "duplicate transaction ids",
            "zero-width spaces",
            "three-decimal currencies",
            "leap days",
            "very long descriptions",
        ],
        "feature": [
            "a --dry-run flag",
            "per-account colours",
            "a yearly rollup",
            "fuzzy payee search",
            "multi-currency totals",
            "an undo log",
            "saved filters",
            "a progress bar",
            "config file validation",
            "shell completion",
        ],
        "dep": ["pydantic", "click", "rich", "pytest", "ruff", "mypy", "pyarrow", "python-dateutil"],
        "labels": ["importer", "cli", "reports", "money", "perf", "docs", "ux", "tests"],
    },
    "go": {
        "component": [
            "retry queue",
            "signature check",
            "rate limiter",
            "dead-letter queue",
            "webhook router",
            "delivery log",
            "TLS config",
            "health endpoint",
            "metrics exporter",
            "backpressure gate",
            "payload encoder",
            "subscriber registry",
            "admin API",
            "config loader",
            "shutdown handler",
        ],
        "thing": [
            "payloads over 1 MB",
            "expired certificates",
            "slow subscribers",
            "duplicate event ids",
            "clock skew",
            "redirect responses",
            "IPv6 endpoints",
            "empty bodies",
            "concurrent retries",
            "SIGTERM during delivery",
        ],
        "feature": [
            "per-subscriber timeouts",
            "a replay endpoint",
            "HMAC key rotation",
            "Prometheus histograms",
            "batch delivery",
            "a pause switch",
            "structured logs",
            "circuit breaking",
            "gzip payloads",
            "a drain mode",
        ],
        "dep": ["golang.org/x/net", "prometheus/client_golang", "go-chi/chi", "zap", "testify", "Go 1.24"],
        "labels": ["retry", "security", "perf", "api", "ops", "docs", "tests", "reliability"],
    },
}

_BUG = [
    "{component} crashes on {thing}",
    "{component} drops {thing}",
    "{component} mishandles {thing}",
    "{component} double-counts {thing}",
    "{component} hangs on {thing}",
    "Wrong totals from {component} with {thing}",
]
_BUG_DESC = [
    "Reproduce with {thing}: the {component} fails instead of handling them.",
    "Seen in production logs twice this week; {thing} trigger it.",
    "A user report: {thing} make the {component} give a wrong result without an error.",
]
_FEATURE = [
    "Add {feature} to the {component}",
    "Support {thing} in the {component}",
    "{component}: {feature}",
]
_FEATURE_DESC = [
    "Operators asked for {feature}; keep the default behaviour unchanged.",
    "Needed before the next release so the {component} covers {thing}.",
]
_TASK = [
    "Write tests for the {component}",
    "Document the {component} settings",
    "Benchmark the {component} with {thing}",
    "Refactor the {component} error handling",
]
_CHORE = ["Bump {dep} to the latest release", "Remove dead code in the {component}", "Pin {dep} in CI"]
_CLOSE = [
    "Fixed in {sha}",
    "Merged in {sha}",
    "Duplicate of {other}",
    "Won't fix: works as designed",
    "Done: tests added and passing",
    "Cannot reproduce on main",
]
_PRIORITIES = [0] * 1 + [1] * 4 + [2] * 8 + [3] * 5 + [4] * 2
_TYPES = ["bug"] * 5 + ["feature"] * 4 + ["task"] * 3 + ["chore"] * 2
_STATUSES = ["open"] * 9 + ["in_progress"] * 3 + ["closed"] * 5 + ["blocked"] + ["deferred"]


def backlog_beads(w: World, rig: RigSpec, count: int, *, days: float = 30.0) -> list[Bead]:
    """`count` ordinary beads of `rig` (and two epics they hang under), oldest first."""
    rng = w.rng(f"backlog-{rig.name}")
    vocab = _VOCAB[rig.lang]
    agents = [f"{rig.name}/polecats/{p}" for p in rig.polecats] + [f"{rig.name}/crew/{c}" for c in rig.crew]
    filers = [f"{rig.name}/crew/{c}" for c in rig.crew] + ["mayor"] + agents[:2]

    def fill(template: str) -> str:
        return template.format(
            component=rng.choice(vocab["component"]),
            thing=rng.choice(vocab["thing"]),
            feature=rng.choice(vocab["feature"]),
            dep=rng.choice(vocab["dep"]),
        )

    def sha() -> str:
        return "".join(rng.choice("0123456789abcdef") for _ in range(8))

    start = w.day - timedelta(days=days)
    step = timedelta(days=days) / max(1, count + 2)
    beads: list[Bead] = []
    epics = []
    for k, comp in enumerate(rng.sample(vocab["component"], 2)):
        epic = Bead(
            w.new_bead_id(rig.prefix, rng),
            f"{comp[0].upper() + comp[1:]} overhaul",
            "epic",
            "open",
            1 + k,
            start + step * k,
            "mayor",
            description=f"Everything the {comp} needs before the next release.",
        )
        epics.append(epic)
        beads.append(epic)
    titles: set[str] = set()
    while len(beads) < count + len(epics):
        itype = rng.choice(_TYPES)
        template = {"bug": _BUG, "feature": _FEATURE, "task": _TASK, "chore": _CHORE}[itype]
        title = fill(rng.choice(template))
        title = title[0].upper() + title[1:]
        if title in titles:
            continue
        titles.add(title)
        at = start + step * len(beads) + timedelta(minutes=rng.randrange(0, 300))
        desc = ""
        if itype == "bug":
            desc = fill(rng.choice(_BUG_DESC))
        elif itype == "feature" and rng.random() < 0.7:
            desc = fill(rng.choice(_FEATURE_DESC))
        status = rng.choice(_STATUSES)
        bead = Bead(
            w.new_bead_id(rig.prefix, rng),
            title,
            itype,
            status,
            rng.choice(_PRIORITIES),
            at,
            rng.choice(filers),
            description=desc,
            labels=sorted(rng.sample(vocab["labels"], rng.choice([0, 0, 1, 1, 2]))),
        )
        touched = at + timedelta(hours=rng.randrange(1, 72))
        if status in ("in_progress", "closed", "blocked"):
            bead.assignee = rng.choice(agents)
        if status == "closed":
            other = rng.choice(beads).id
            bead.closed_at = min(touched, w.day)
            bead.close_reason = rng.choice(_CLOSE).format(sha=sha(), other=other)
        else:
            bead.updated_at = min(touched, w.day)
        if rng.random() < 0.2:
            bead.dep(rng.choice(epics).id, "parent-child", at, bead.created_by)
        if status == "blocked" or rng.random() < 0.12:
            blocker = rng.choice(beads[len(epics) :] or epics)
            bead.dep(blocker.id, "blocks", at, bead.created_by)
        beads.append(bead)
    return beads
