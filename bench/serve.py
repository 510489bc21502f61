"""`gastown-ft serve` on each engine against llama.cpp called directly, side by side in one run.

    .venv/bin/python bench/serve.py --artifacts ARTIFACTS [--clients 1 2 4] [--requests 6] [--max-tokens 64]

ARTIFACTS is an artifacts directory whose registry has a promoted version with its GGUF (what
`make demo` leaves). For each engine (llama.cpp, transformers) the bench starts `gastown-ft serve`
in its own process on a free loopback port and runs the load test (`gastown_ft.serve.loadtest`) from
this process: streamed greedy chat completions, `--requests` per concurrency level (bounded by
`--max-seconds`). "direct" is llama-cpp-python called in this process on the same GGUF and the same
prompt ids, one `Llama` per concurrent client, with the threads the server's engine would use: the
floor `serve` is measured against (no HTTP, no JSON, no event loop).

Latency is the whole reply's; tok/s is all completion tokens of a level over its wall time. The
machine's load average is printed with the table: on a shared machine the numbers move with it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(artifacts: Path, engine: str, parallel: int, work: Path):
    port = _free_port()
    cfg = work / f"serve-{engine}.toml"
    cfg.write_text(
        f'[artifacts]\ndir = "{artifacts}"\n[serve]\nport = {port}\nengine = "{engine}"\nparallel = {parallel}\n'
    )
    log = (work / f"serve-{engine}.log").open("w")
    env = {k: v for k, v in os.environ.items() if k != "GASTOWN_FT_CONFIG"} | {"HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from gastown_ft.cli import main; main()", "--config", str(cfg), "serve"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        try:
            with urllib.request.urlopen(base + "/health", timeout=5) as r:
                return proc, base, json.loads(r.read())
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit(
                    f"serve --engine {engine} did not start:\n" + (work / f"serve-{engine}.log").read_text()
                ) from None
            time.sleep(0.5)


def _stop(proc) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def _direct(gguf: Path, merged: Path, clients: int, requests: int, max_tokens: int) -> dict:
    """llama.cpp itself on the load test's prompts: `clients` threads, a Llama each."""
    from transformers import AutoTokenizer

    from gastown_ft.llamacpp.runtime import close, decode_threads, default_threads, open_gguf, tokens
    from gastown_ft.serve.loadtest import PROMPTS, _percentile

    tok = AutoTokenizer.from_pretrained(merged)
    ends = {tok.convert_tokens_to_ids("<|im_end|>"), tok.eos_token_id}
    prompt_ids = [
        tok.apply_chat_template(
            [{"role": "user", "content": p}], add_generation_prompt=True, return_dict=True
        )["input_ids"]
        for p in PROMPTS
    ]
    share = min(max(1, default_threads() // clients), decode_threads(gguf, None))  # as the server's pool
    models = [open_gguf(gguf, threads=share) for _ in range(clients)]
    lock = threading.Lock()
    sent = [0]
    latencies: list[float] = []
    total = [0]

    def loop(llm) -> None:
        while True:
            with lock:
                if sent[0] >= requests:
                    return
                n = sent[0]
                sent[0] += 1
            started = time.perf_counter()
            count = 0
            for t in tokens(llm, prompt_ids[n % len(prompt_ids)], max_new_tokens=max_tokens):
                count += 1
                if t in ends:
                    break
            with lock:
                latencies.append(time.perf_counter() - started)
                total[0] += count

    started = time.perf_counter()
    threads = [threading.Thread(target=loop, args=(m,)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    for m in models:
        close(m)
    return {
        "clients": clients,
        "requests": len(latencies),
        "completion_tokens": total[0],
        "tokens_per_second": round(total[0] / wall, 2),
        "latency_p50": round(_percentile(latencies, 0.5), 4),
        "latency_p95": round(_percentile(latencies, 0.95), 4),
        "first_token_p50": None,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--artifacts", type=Path, required=True)
    p.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--requests", type=int, default=6, help="requests per concurrency level")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--max-seconds", type=float, default=180.0, help="per level, at most")
    p.add_argument("--engines", nargs="+", default=["llama.cpp", "transformers"])
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from gastown_ft.artifacts import ArtifactStore
    from gastown_ft.export.registry import Registry
    from gastown_ft.serve.loadtest import load_test

    registry = Registry(ArtifactStore(a.artifacts.resolve()).registry_dir())
    current = registry.current()
    if current is None:
        raise SystemExit(f"no promoted version in {registry.root}")
    load_before = os.getloadavg()
    rows: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        for engine in a.engines:
            proc, base, health = _serve(a.artifacts.resolve(), engine, max(a.clients), Path(tmp))
            try:
                rows[f"serve {engine}"] = load_test(
                    base,
                    a.clients,
                    requests=a.requests,
                    max_seconds=a.max_seconds,
                    max_tokens=a.max_tokens,
                )
            finally:
                _stop(proc)
        rows["llama.cpp direct"] = [
            _direct(current.bundle_dir / "model.gguf", current.merged_dir, c, a.requests, a.max_tokens)
            for c in a.clients
        ]
    load_after = os.getloadavg()

    direct = {r["clients"]: r for r in rows["llama.cpp direct"]}
    print(
        f"{current.version} ({current.bundle_dir}), {a.requests} requests per level, "
        f"up to {a.max_tokens} new tokens, greedy, {os.cpu_count()} CPUs"
    )
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    print(
        f"{'path':<20} {'clients':>7} {'p50 s':>7} {'p95 s':>7} {'TTFT p50':>9} {'tok/s':>7} {'direct/serve':>12}"
    )
    for name, levels in rows.items():
        for r in levels:
            ratio = (
                direct[r["clients"]]["tokens_per_second"] / r["tokens_per_second"]
                if r["tokens_per_second"]
                else 0
            )
            ttft = f"{r['first_token_p50']:.3f}" if r.get("first_token_p50") is not None else "-"
            print(
                f"{name:<20} {r['clients']:>7} {r['latency_p50']:>7.2f} {r['latency_p95']:>7.2f} "
                f"{ttft:>9} {r['tokens_per_second']:>7.1f} {ratio:>11.2f}x"
            )
    if a.json:
        a.json.write_text(json.dumps({"load": [load_before, load_after], "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
