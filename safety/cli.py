"""alive-safety: run the safety checks from a shell and print decisions as JSON.

Model dir from ALIVE_MODEL_DIR (default build/models), policy from ALIVE_POLICY_FILE
(default the policy shipped with the package).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

app = typer.Typer(help="Alive safety checks: captions, photos and the held-out caption eval.")


def _model_dir(*needed: str) -> Path:
    path = Path(os.environ.get("ALIVE_MODEL_DIR", "build/models"))
    if not all((path / name).is_file() for name in needed or ("e5.onnx",)):
        # The default is relative to the checkout: say so instead of a tokenizer traceback.
        typer.echo(f"alive-safety: no built models in {path.resolve()}: run `make models` in "
                   "the checkout, or set ALIVE_MODEL_DIR", err=True)
        raise typer.Exit(2)
    return path


def _policy_path() -> Path | None:
    raw = os.environ.get("ALIVE_POLICY_FILE", "")
    return Path(raw) if raw else None


def _print(payload: dict) -> None:
    typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))


def _load_rgb(path: Path):  # -> np.ndarray
    # The service decodes uploads in alive_service/decode.py; the CLI only needs a plain,
    # orientation-corrected RGB array.
    import numpy as np
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


@app.command()
def text(caption: str) -> None:
    """Check a caption; prints the decision JSON (exit code 0 either way)."""
    from safety.caption import CaptionChecker
    from safety.decision import decide
    from safety.policy import load_policy

    policy = load_policy(_policy_path())
    checker = CaptionChecker(_model_dir(), policy)
    _print(decide(checker.check(caption), policy).to_json())


@app.command()
def image(
    photo: Path = typer.Argument(..., exists=True, dir_okay=False),
    bank: Path | None = typer.Option(
        None, help="Text file of known-bad PDQ hashes, one '<hex> [id]' per line."
    ),
) -> None:
    """Check a photo: nudity, faces, PDQ hash (and a hash-bank match with --bank)."""
    from safety.check import SafetyChecker
    from safety.hashing import MemoryHashBank

    hash_bank = None
    if bank is not None:
        entries = []
        for n, line in enumerate(bank.read_text().splitlines()):
            parts = line.split()
            if parts and not parts[0].startswith("#"):
                entries.append((parts[1] if len(parts) > 1 else str(n + 1), parts[0]))
        hash_bank = MemoryHashBank(bank.stem, entries)
    checker = SafetyChecker(_model_dir("e5.onnx", "nudenet_320n.onnx", "pnet.onnx"),
                             _policy_path())
    report = checker.check_image(_load_rgb(photo), hash_bank)
    payload = report.decision.to_json()
    payload["faces"] = len(report.faces)
    payload["face_boxes"] = [[round(v, 1) for v in f.box] for f in report.faces]
    payload["pdq"] = report.pdq_hex
    payload["pdq_quality"] = report.pdq_quality
    payload["bank_match"] = (
        None
        if report.bank_match is None
        else {
            "bank": report.bank_match.bank,
            "entry_id": report.bank_match.entry_id,
            "distance": report.bank_match.distance,
        }
    )
    _print(payload)


@app.command()
def hash(photo: Path = typer.Argument(..., exists=True, dir_okay=False)) -> None:  # noqa: A001
    """Print the photo's PDQ hash and quality (to add it to a bank)."""
    from safety.hashing import pdq_hash

    hex_hash, quality = pdq_hash(_load_rgb(photo))
    _print({"pdq": hex_hash, "quality": quality})


@app.command(name="eval")
def eval_(
    details: bool = typer.Option(False, help="Also list the misses and false blocks."),
    split: Path | None = typer.Option(
        None, help="A JSONL file of {text, label} rows instead of the held-out split."
    ),
    by: str | None = typer.Option(
        None,
        help="language | technique: per-group tables (harmful / benign blocked) on the tuned "
        "split, grouped cross-validation over families, and the held-out splits.",
    ),
) -> None:
    """Precision and recall per category on the held-out caption split."""
    from safety.caption import CaptionChecker
    from safety.dataset import EVAL_FILE, load_captions
    from safety.decision import decide
    from safety.evaluate import evaluate
    from safety.policy import load_policy

    policy = load_policy(_policy_path())
    checker = CaptionChecker(_model_dir(), policy)
    if by is not None:
        _eval_by(checker, by, split)
        return
    rows = load_captions(split or EVAL_FILE)
    report = evaluate(rows, lambda t: decide(checker.check(t), policy))
    payload = report.to_json()
    if not details:
        payload.pop("misses")
        payload.pop("false_blocks")
    _print(payload)


def _eval_by(checker, by: str, split: Path | None) -> None:  # checker: CaptionChecker
    from safety.crossval import grouped_cv_decisions
    from safety.dataset import EVAL_FILE, HELDOUT_FILE, PROBE_FILE, TRAIN_FILE, load_captions
    from safety.decision import decide
    from safety.evaluate import format_table, rates_by

    keys = {"language": lambda r: r.lang, "technique": lambda r: r.technique}
    if by not in keys:
        typer.echo(f"alive-safety: --by must be one of {sorted(keys)}", err=True)
        raise typer.Exit(2)
    key = keys[by]

    def run(rows):  # -> list[Decision]
        return [decide(checker.check(r.text), checker.policy) for r in rows]

    train = load_captions(TRAIN_FILE)
    columns = {
        "tuned split (train)": rates_by(train, run(train), key),
        "grouped CV (families)": rates_by(train, grouped_cv_decisions(checker, train), key),
    }
    for name, path in (("held-out (untuned)", split or HELDOUT_FILE), ("old eval", EVAL_FILE),
                       ("everyday probe", PROBE_FILE)):
        rows = load_captions(path)
        columns[name] = rates_by(rows, run(rows), key)
    typer.echo(f"policy {checker.policy.version}; harmful blocked % (n), benign blocked % (n)")
    typer.echo(format_table(by, columns))


if __name__ == "__main__":
    app()
