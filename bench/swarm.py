"""Swarm benchmark: samples/s of the hivemind backend with 1, 2 and 3 peers on loopback, and the time
of an averaging round (matchmaking + all-reduce of the LoRA gradients, as seen by the first peer).

    .venv/bin/python bench/swarm.py
    .venv/bin/python bench/swarm.py --steps 30 --peers 1 2 3 --json /tmp/swarm-bench.json

Each peer is a separate process (`python -m gastown_ft.swarm.worker`, one torch thread) training the
same tiny LLaMA with LoRA on chat examples; the swarm takes `--steps` optimizer steps of
`--target-batch` sequences. samples/s is the swarm's: sequences trained by all peers over the longest
peer's training loop (after the start barrier).

Read the numbers honestly: on one machine the peers share its cores (two, on the project's CI
machines), so more peers do not make more compute and samples/s cannot scale; what the table shows is
the overhead of the protocol (a round costs matchmaking_time at least) and that the run still works.
On separate machines each peer brings its own cores, and a round costs about
2(n-1)/n x (bytes per round) / bandwidth on top of the matchmaking time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def run_swarm(n_peers: int, work: Path, assets: dict, steps: int, target_batch: int) -> dict:
    from gastown_ft_tests.swarm.peers import Swarm

    swarm = Swarm(work, assets["base"], assets["key"])
    training = {"max_steps": steps}
    options = {"min_peers": n_peers, "target_batch_size": target_batch}
    run_id = f"bench-{n_peers}-{os.getpid()}"
    started = time.perf_counter()
    try:
        first = swarm.start(
            "p0", run_id=run_id, examples=assets["a"], first=True, training=training, swarm=options
        )
        maddrs = first.maddrs(timeout=180)
        peers = [first] + [
            swarm.start(
                f"p{i}",
                run_id=run_id,
                examples=assets["a"],
                first=False,
                initial_peers=maddrs,
                training=training,
                swarm=options,
            )
            for i in range(1, n_peers)
        ]
        outcomes = [p.outcome(timeout=900) for p in peers]
    finally:
        swarm.stop_all()
    bad = [o for o in outcomes if o.get("event") != "done"]
    if bad:
        raise SystemExit(f"{n_peers} peer(s): a peer failed: {bad}")
    stats = [o["swarm"] for o in outcomes]
    loop_s = max(s["samples"] / s["samples_per_s"] for s in stats if s["samples_per_s"] > 0)
    samples = sum(s["samples"] for s in stats)
    rounds = stats[0]["round_seconds"]
    return {
        "peers": n_peers,
        "samples": samples,
        "samples_per_s": samples / loop_s,
        "loop_s": loop_s,
        "wall_s": time.perf_counter() - started,
        "averaged_rounds": stats[0]["averaged_rounds"],
        "largest_group": stats[0]["largest_group"],
        "round_s_mean": sum(rounds) / len(rounds) if rounds else None,
        "round_s_median": sorted(rounds)[len(rounds) // 2] if rounds else None,
        "bytes_per_round": stats[0]["grad_bytes_per_round"],
        "sent_bytes_per_round": stats[0]["sent_bytes_per_round"],
        "trainable_bytes": stats[0]["trainable_bytes"],
        "full_model_bytes": stats[0]["full_model_bytes"],
        "val_loss": outcomes[0]["val_loss"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peers", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--target-batch", type=int, default=16)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from gastown_ft.swarm.keys import generate_key_file
    from gastown_ft_tests.swarm.peers import write_examples
    from gastown_ft_tests.training.test_data import chat, make_tokenizer, save_tiny_model

    with tempfile.TemporaryDirectory(prefix="swarm-bench-") as tmp:
        work = Path(tmp)
        assets = {
            "base": save_tiny_model(work / "base", make_tokenizer(), hidden=32, layers=2, init_range=0.3),
            "a": write_examples(
                work / "a.json", [chat(i) for i in range(64)], [chat(i) for i in range(64, 72)], "bench"
            ),
            "key": work / "swarm.key",
        }
        generate_key_file(assets["key"])
        rows = []
        for n in args.peers:
            (work / f"n{n}").mkdir()
            rows.append(run_swarm(n, work / f"n{n}", assets, args.steps, args.target_batch))
            print(f"{n} peer(s): {rows[-1]['samples_per_s']:.1f} samples/s", file=sys.stderr)

    cores = len(os.sched_getaffinity(0))
    print(
        f"\nSwarm on loopback, {cores} core(s), {args.steps} steps of {args.target_batch} sequences, tiny LLaMA + LoRA\n"
    )
    print(
        "| peers | samples/s | loop s | steps averaged (largest group) | averaging round s (mean / median) "
        "| bytes per round | sent per peer per round | LoRA bytes | full model bytes |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        rs = f"{r['round_s_mean']:.2f} / {r['round_s_median']:.2f}" if r["round_s_mean"] is not None else "-"
        print(
            f"| {r['peers']} | {r['samples_per_s']:.1f} | {r['loop_s']:.1f} "
            f"| {r['averaged_rounds']}/{args.steps} ({r['largest_group']}) | {rs} | {r['bytes_per_round']:,} "
            f"| {r['sent_bytes_per_round']:,} | {r['trainable_bytes']:,} | {r['full_model_bytes']:,} |"
        )
    print(
        f"\nOn one {cores}-core machine the peers compete for the same cores: samples/s does not scale with "
        "peers here; the rounds show the protocol's overhead (matchmaking_time 1 s on loopback)."
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
