"""Build every model artifact from source into the model directory.

``make models`` runs this. Each component exports its own ONNX files and
trained heads; nothing binary is committed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def build_all(out_dir: Path) -> dict[str, float]:
    # Imported here so `--help` stays fast and a failing component names itself.
    from alive_service.motion.export import build as build_motion
    from safety.build import build as build_safety
    from safety.faces import build as build_faces

    out_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    for name, build in (("faces", build_faces), ("motion", build_motion), ("safety", build_safety)):
        start = time.perf_counter()
        build(out_dir)
        timings[name] = round(time.perf_counter() - start, 2)
    (out_dir / "BUILD.json").write_text(json.dumps({"built_in_s": timings}, indent=2))
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("build/models"))
    args = parser.parse_args()
    timings = build_all(args.out)
    print(f"models built in {args.out}: {timings}")


if __name__ == "__main__":
    main()
