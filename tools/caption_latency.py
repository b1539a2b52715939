"""Caption check latency on one thread: p50/p95 for 50-, 200- and 500-character captions.

    ALIVE_MODEL_DIR=build/models .venv/bin/python tools/caption_latency.py [--runs 40]

Times the whole ``CaptionChecker.check`` (normalisation, rules, e5 pieces, heads, profanity
SVM), wall and CPU time of the calling thread: on a shared machine wall time swings with
other people's load, CPU time is the steadier measure of the work. The readable-text cache
and the tokenizer's word cache are cleared before every run, so each run pays for a caption
seen for the first time.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

EN_500 = (
    "we went to the lake with the whole family this weekend, the kids built sandcastles, "
    "grandma waved from the pier and the dog chased seagulls along the beach while the sun "
    "went down behind the hills; make the water shimmer, the leaves move in the warm wind, "
    "the clouds drift across the orange sky and the first stars appear above the trees, "
    "and let everyone on the pier turn around and wave at the camera one last time before "
    "it gets dark and we all walk back to the cabin for dinner and a campfire with songs"
)[:500]
MIXED = (
    "Sommerabend am See mit der ganzen Familie, the kids are building sandcastles and grandma "
    "is waving from the pier while the sun sets behind the hills; 夕焼けがとてもきれいで、"
    "子供たちは笑っています. Los perros corren por la playa y las gaviotas vuelan sobre las "
    "olas, मौसम बहुत सुहाना है और सब खुश हैं. Make the water shimmer, the leaves move gently "
    "in the warm wind, and the clouds drift slowly across the orange sky until the first stars"
)
MIXED_500 = (MIXED + " " + MIXED)[:500]
CAPTIONS = {"50": EN_500[:50], "200": EN_500[:200], "500 en": EN_500, "500 mixed": MIXED_500}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()

    from safety import normalize
    from safety.caption import CaptionChecker
    from safety.policy import load_policy

    model_dir = Path(os.environ.get("ALIVE_MODEL_DIR", "build/models"))
    checker = CaptionChecker(model_dir, load_policy(), threads=1)
    # Older checkouts (to measure "before") have fewer caches to clear, or none.
    forget = [
        getattr(normalize, "clear_caches", None)
        or getattr(normalize.readable, "cache_clear", lambda: None),
        getattr(checker.embed, "clear_cache", lambda: None),
    ]

    def clear() -> None:
        for f in forget:
            f()

    print(f"caption check, 1 thread, {args.runs} runs, load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores (ms)")
    print(f"  {'caption':<10} {'chars':>5} {'pieces':>6} {'wall p50':>9} {'wall p95':>9} "
          f"{'cpu p50':>8} {'cpu p95':>8}")
    for name, text in CAPTIONS.items():
        checker.check(text)  # warm-up: first ORT runs allocate
        wall, cpu = [], []
        for _ in range(args.runs):
            clear()
            w, c = time.perf_counter(), time.thread_time()
            checker.check(text)
            cpu.append((time.thread_time() - c) * 1000)
            wall.append((time.perf_counter() - w) * 1000)
        print(f"  {name:<10} {len(text):5d} {len(checker.pieces(text)):6d} "
              f"{np.percentile(wall, 50):9.1f} {np.percentile(wall, 95):9.1f} "
              f"{np.percentile(cpu, 50):8.1f} {np.percentile(cpu, 95):8.1f}")


if __name__ == "__main__":
    main()
