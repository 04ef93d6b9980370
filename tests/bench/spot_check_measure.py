#!/usr/bin/env python3
"""How far apart two honest llama-servers' greedy answers are (issue 15, spot checks).

Runs the real llama-server on one model under a reference setting and under settings that honest
workers differ in (threads, parallel slots with other asks running beside, -b/-ub, the prompt
cache), asks every setting the same prompts at temperature 0 with a fixed seed and n_probs, and
compares each pair of token sequences both ways, as core/trust/spot_check does: the first
divergence, the log-probability gap there (the verifier's top-1 minus the suspect's token, in the
verifier's own top-n), then a re-sync (the verifier continues from the prompt and the suspect's
tokens up to and including the divergence) and the next divergence, up to --tokens.

Prints one table row per model and setting; --json FILE keeps every divergence, --fixture FILE
writes honest divergences (verifier steps with their top-n, suspect tokens) for the unit test.
Usage: tests/bench/run_spot_check_measure.sh (finds llama-server and the models), or
  spot_check_measure.py --llama-server PATH --model NAME=FILE [--model ...] [--prompts N] [--tokens N]
"""
import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request


def setting(name, threads=1, slots=1, batch=512, cache=False, load=0):
    """llama-server flags and how it is asked; load: other asks always running in other slots."""
    args = ["-t", str(threads), "-np", str(slots), "-b", str(batch), "-ub", str(batch)]
    return {"name": name, "args": args, "cache": cache, "load": load, "slots": slots}


REF = setting("ref")
SETTINGS = [
    setting("ref-again"),
    setting("threads-2", threads=2),
    setting("slots-4+load", slots=4, load=3),
    setting("batch-32", batch=32),
    setting("cache-on", cache=True),
    setting("all-differ", threads=2, slots=4, batch=32, cache=True, load=3),
]

WORDS = ("the a of river light mesh worker model token answer signal mountain quiet number garden "
         "engine paper window morning letter station bridge winter story market question machine "
         "history silver forest ocean music orange theory village").split()
PREAMBLE = ("You are a careful assistant. Answer the question below in plain words, one short "
            "paragraph, without lists. ")


def die(msg):
    print(f"spot_check_measure: {msg}", file=sys.stderr)
    sys.exit(1)


def make_prompts(n, seed):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 24)))
        out.append(f"{PREAMBLE}Question {i}: {words}?")
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port, path, body, timeout=600):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.load(r)


class Server:
    def __init__(self, exe, model, args, ctx, log):
        self.port = free_port()
        self.log = open(log, "wb")
        cmd = [exe, "-m", model, "--host", "127.0.0.1", "--port", str(self.port), "-c", str(ctx), "--seed", "1",
               "--no-warmup", "--poll", "0"] + args
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        for _ in range(600):
            if self.proc.poll() is not None:
                die(f"llama-server exited ({self.proc.returncode}); see {log}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        die(f"llama-server did not become healthy; see {log}")

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()

    def tokenize(self, text):
        return post(self.port, "/tokenize", {"content": text, "add_special": True})["tokens"]

    def generate(self, prompt_ids, n, n_probs, cache):
        """Greedy steps: [(token, [(id, logprob), ...top n_probs])]."""
        body = {"prompt": prompt_ids, "n_predict": n, "temperature": 0, "seed": 1, "n_probs": n_probs,
                "return_tokens": True, "cache_prompt": cache, "ignore_eos": True}
        r = post(self.port, "/completion", body)
        steps = [(p["id"], [(t["id"], t["logprob"]) for t in p["top_logprobs"]]) for p in r["completion_probabilities"]]
        if [s[0] for s in steps] != r["tokens"]:
            die("llama-server's tokens and completion_probabilities disagree")
        return steps


class Load:
    """Other asks in the other slots while the measured ones run (different prompts and lengths)."""

    def __init__(self, server, prompts, n):
        self.stop_flag = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(server, prompts, i), daemon=True) for i in range(n)]
        self.done = 0
        for t in self.threads:
            t.start()

    def run(self, server, prompts, i):
        rng = random.Random(1000 + i)
        while not self.stop_flag.is_set():
            p = prompts[rng.randrange(len(prompts))]
            try:
                server.generate(p, rng.randint(8, 48), 1, False)
                self.done += 1
            except (urllib.error.URLError, OSError):
                return

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join()


def gap_at(verifier_top, suspect_token):
    """top-1 minus the suspect token's log-probability, its rank in the verifier's top-n (None: not in it)."""
    for rank, (tid, lp) in enumerate(verifier_top):
        if tid == suspect_token:
            return max(0.0, verifier_top[0][1] - lp), rank
    return verifier_top[0][1] - verifier_top[-1][1], None  # at least this much


def compare(verifier, prompt, v_steps, s_tokens, n_probs, cache, segments=None):
    """The rule's walk: divergences (pos, gap, rank, verifier top) with re-sync on the verifier.
    segments, when given, receives what the verifier answered: [(first position, steps)]."""
    divs, base, steps = [], 0, v_steps
    while True:
        if segments is not None:
            segments.append((base, steps))
        p = next((base + i for i, (tid, _) in enumerate(steps)
                  if base + i < len(s_tokens) and tid != s_tokens[base + i]), None)
        if p is None:
            return divs
        top = steps[p - base][1]
        gap, rank = gap_at(top, s_tokens[p])
        divs.append({"pos": p, "gap": gap, "rank": rank, "verifier": steps[p - base][0], "suspect": s_tokens[p],
                     "top": top})
        if p + 1 >= len(s_tokens):
            return divs
        base = p + 1
        steps = verifier.generate(prompt + s_tokens[:base], len(s_tokens) - base, n_probs, cache)


def measure_model(args, name, model, swaps):
    prompts_txt = make_prompts(args.prompts, args.seed)
    ctx = args.ctx
    ref = Server(args.llama_server, model, REF["args"], ctx, f"{args.logdir}/{name}-ref.log")
    rows, fixture = [], []
    try:
        prompts = [ref.tokenize(t) for t in prompts_txt]
        load_prompts = [ref.tokenize(t + " and more") for t in make_prompts(32, args.seed + 1)]
        t0 = time.time()
        ref_steps = [ref.generate(p, args.tokens, args.n_probs, False) for p in prompts]
        ref_s = time.time() - t0
        print(f"{name}: ref {len(prompts)} prompts x {args.tokens} tokens in {ref_s:.1f} s", file=sys.stderr)
        swap_settings = [dict(REF, name=("swap:" + os.path.splitext(os.path.basename(f))[0])[:15], model=f)
                         for f in swaps]
        for st in SETTINGS + swap_settings:
            srv = Server(args.llama_server, st.get("model", model), st["args"], ctx * st["slots"],
                         f"{args.logdir}/{name}-{st['name']}.log")
            try:
                load = Load(srv, load_prompts, st["load"]) if st["load"] else None
                t0 = time.time()
                other = [srv.generate(p, args.tokens, args.n_probs, st["cache"]) for p in prompts]
                pairs = []
                for i, p in enumerate(prompts):
                    r_tok = [s[0] for s in ref_steps[i]]
                    o_tok = [s[0] for s in other[i]]
                    # both ways: the reference checks the other, and the other checks the reference
                    segs = []
                    d1 = compare(ref, p, ref_steps[i], o_tok, args.n_probs, False, segs)
                    d2 = compare(srv, p, other[i], r_tok, args.n_probs, st["cache"])
                    pairs.append((d1, d2, max_lp_delta(ref_steps[i], other[i])))
                    honest = "model" not in st and d1 and all(d["rank"] in (0, 1) for d in d1)
                    if honest and len(fixture) < args.fixture_max:
                        fixture.append({"model": name, "setting": st["name"], "prompt": i, "suspect": o_tok,
                                        "segments": [{"from": b, "steps": [[t, [list(x) for x in top[:2]]]
                                                                           for t, top in seg]} for b, seg in segs]})
                if load:
                    load.stop()
                rows.append(summarize(name, st["name"], pairs, len(prompts), args.tokens,
                                      time.time() - t0, load.done if load else 0, args))
                print(format_row(rows[-1]), flush=True)
                if args.json:
                    with open(args.json, "a") as f:
                        f.write(json.dumps(rows[-1]) + "\n")
            finally:
                srv.stop()
    finally:
        ref.stop()
    return rows, fixture


def max_lp_delta(a, b):
    """The largest |difference| of the chosen token's log-probability before the first divergence."""
    out = 0.0
    for (ta, topa), (tb, topb) in zip(a, b):
        if ta != tb:
            break
        out = max(out, abs(topa[0][1] - topb[0][1]))
    return out


def fails(divs, tokens, args):
    """Whether the rule (core/trust/spot_check) fails this walk at --tau and --r."""
    allowed = args.r * max(1, (tokens + 255) // 256)
    for k, d in enumerate(divs):
        if d["rank"] not in (0, 1) or d["gap"] > args.tau or k + 1 > allowed:
            return True
    return False


def summarize(model, setting, pairs, n, tokens, secs, load_done, args):
    divs = [d for d1, d2, _ in pairs for d in d1 + d2]
    firsts = [d1[0]["pos"] for d1, _, _ in pairs if d1]
    per_seq = [len(d) for d1, d2, _ in pairs for d in (d1, d2)]
    gaps = sorted(d["gap"] for d in divs)
    per256 = [len(d) * 256 / tokens for d1, d2, _ in pairs for d in (d1, d2)]
    return {
        "model": model, "setting": setting, "prompts": n, "tokens": tokens, "seconds": round(secs, 1),
        "load_asks": load_done, "diverged": sum(1 for d1, d2, _ in pairs if d1 or d2),
        "first_div_median": statistics.median(firsts) if firsts else None,
        "divergences": len(divs),
        "max_per_seq": max(per_seq) if per_seq else 0,
        "max_per_256": max(per256) if per256 else 0,
        "outside_top2": sum(1 for d in divs if d["rank"] is None or d["rank"] > 1),
        "max_gap": gaps[-1] if gaps else 0.0,
        "p99_gap": gaps[min(len(gaps) - 1, int(0.99 * len(gaps)))] if gaps else 0.0,
        "max_lp_delta": max(x for _, _, x in pairs),
        "fails": sum(1 for d1, d2, _ in pairs for d in (d1, d2) if fails(d, tokens, args)),
        "all": [[d1, d2] for d1, d2, _ in pairs if d1 or d2],
    }


HEADER = (f"{'model':8} {'setting':15} {'prompts':>7} {'diverged':>8} {'1st pos':>7} {'divs':>5} {'max/seq':>7} "
          f"{'outside2':>8} {'max gap':>9} {'p99 gap':>9} {'max dlogp':>9} {'fails':>5}")


def format_row(r):
    fp = "-" if r["first_div_median"] is None else f"{r['first_div_median']:.0f}"
    return (f"{r['model']:8} {r['setting']:15} {r['prompts']:7} {r['diverged']:8} {fp:>7} {r['divergences']:5} "
            f"{r['max_per_seq']:7} {r['outside_top2']:8} {r['max_gap']:9.5f} {r['p99_gap']:9.5f} "
            f"{r['max_lp_delta']:9.2e} {r['fails']:5}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llama-server", required=True)
    ap.add_argument("--model", action="append", required=True, help="NAME=FILE (repeatable)")
    ap.add_argument("--prompts", type=int, default=200)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--n-probs", type=int, default=5)
    ap.add_argument("--ctx", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--logdir", default="/tmp")
    ap.add_argument("--json", help="appends one JSON line per row, every divergence in it")
    ap.add_argument("--fixture")
    ap.add_argument("--tau", type=float, default=0.01, help="the rule's near-tie band in nats, for the fails column")
    ap.add_argument("--r", type=int, default=3, help="the rule's near-ties per 256 tokens, for the fails column")
    ap.add_argument("--fixture-max", type=int, default=4)
    ap.add_argument("--swap", action="append", default=[], metavar="MODEL=FILE",
                    help="a dishonest setting: the reference's flags on another file (e.g. a cheaper quantization) "
                         "when measuring MODEL (repeatable)")
    ap.add_argument("--settings", help="comma-separated subset of: " + ",".join(s["name"] for s in SETTINGS) + ",swap")
    args = ap.parse_args()
    if not os.access(args.llama_server, os.X_OK):
        die(f"{args.llama_server}: not an executable file")
    if args.prompts < 1 or args.tokens < 1 or args.n_probs < 2:
        die("--prompts and --tokens must be >= 1, --n-probs >= 2")
    if args.settings:
        wanted = args.settings.split(",")
        unknown = [w for w in wanted if w not in {s["name"] for s in SETTINGS} | {"swap"}]
        if unknown:
            die(f"unknown setting {unknown[0]}")
        SETTINGS[:] = [s for s in SETTINGS if s["name"] in wanted]
        if "swap" not in wanted:
            args.swap = []
    swaps = {}
    for m in args.swap:
        name, sep, path = m.partition("=")
        if not sep or not os.path.isfile(path):
            die(f"--swap {m}: want MODEL=FILE of an existing file")
        swaps.setdefault(name, []).append(path)
    models = []
    for m in args.model:
        name, sep, path = m.partition("=")
        if not sep or not os.path.isfile(path):
            die(f"--model {m}: want NAME=FILE of an existing file")
        models.append((name, path))
    fixture = []
    print(HEADER, flush=True)
    for name, path in models:
        fixture += measure_model(args, name, path, swaps.get(name, []))[1]
    if args.fixture:
        with open(args.fixture, "w") as f:
            json.dump(fixture, f, separators=(",", ":"))


if __name__ == "__main__":
    main()
