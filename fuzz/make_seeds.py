#!/usr/bin/env python3
"""Writes the fuzzers' seed corpora, fuzz/corpus/<target>/: small valid inputs of each format
(from `sdlens plant`, and llama2.c files built here from the format's layout), and truncated and
corrupted copies of each. They start a fuzzing run (`fuzz_gguf -max_total_time=600 corpus/fuzz_gguf`)
and are replayed under AddressSanitizer by the test command (fuzz/replay_main.cpp).

Usage: fuzz/make_seeds.py SDLENS_BINARY   (from the repository root)
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
sdlens = sys.argv[1]
corpus = os.path.join(here, "corpus")


def variants(name, data):
    """The input itself, cut short at three places, and with one header byte changed."""
    out = {name: data}
    for frac in (2, 3, 8):
        out[f"{name}.cut{frac}"] = data[: len(data) // frac]
    flipped = bytearray(data)
    flipped[min(9, len(data) - 1)] ^= 0x40
    out[f"{name}.flip9"] = bytes(flipped)
    return out


def write(target, files):
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


def plant(tmp, family, gguf):
    out = os.path.join(tmp, family + ("-gguf" if gguf else "-hf"))
    args = [sdlens, "plant", "--family", family, "--hidden", "8", "--layers", "2", "--heads", "2",
            "--ffn", "8", "--vocab", "16", "--explode", "1", "--out", out]
    args += ["--gguf"] if gguf else ["--dtype", "bf16"]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return out


def safetensors_with_config(directory):
    """model.safetensors with config.json moved into its __metadata__ (what fuzz_safetensors reads)."""
    with open(os.path.join(directory, "model.safetensors"), "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + n])
    with open(os.path.join(directory, "config.json")) as f:
        header["__metadata__"] = json.load(f)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data[8 + n :]


def llama2c_checkpoint(dim=8, hidden=16, layers=1, heads=2, kv_heads=2, vocab=16, seq=8):
    """A llama2.c run.c checkpoint: 7 int32 of config, then the float32 weights in run.c's order."""
    head = dim // heads
    kv = kv_heads * head
    counts = [vocab * dim, layers * dim, layers * dim * dim, layers * dim * kv, layers * dim * kv,
              layers * dim * dim, layers * dim, layers * hidden * dim, layers * dim * hidden,
              layers * hidden * dim, dim, seq * head // 2, seq * head // 2]
    floats = [((i * 2654435761) % 1000) / 1000.0 - 0.5 for i in range(sum(counts))]
    return struct.pack("<7i", dim, hidden, layers, heads, kv_heads, vocab, seq) + struct.pack(f"<{len(floats)}f", *floats)


def llama2c_tokenizer(vocab=16):
    """A llama2.c tokenizer.bin: max token length, then (score, length, bytes) per token."""
    pieces = [b"<unk>", b"<s>", b"</s>"] + [bytes([c]) for c in b" .Hello,wrld!"]
    pieces = pieces[:vocab]
    out = struct.pack("<i", max(len(p) for p in pieces))
    for i, p in enumerate(pieces):
        out += struct.pack("<fi", -float(i), len(p)) + p
    return out


def random_gguf(tmp, family):
    """A random checkpoint of a family sdlens cannot plant into (Gemma), as GGUF."""
    out = os.path.join(tmp, family + "-random")
    subprocess.run([sdlens, "random", "--family", family, "--layers", "2", "--vocab", "16", "--dtype", "q8_0", "--gguf", "--out", out],
                   check=True, stdout=subprocess.DEVNULL)
    return os.path.join(out, "model.gguf")


def random_hf(tmp, family):
    """A random Hugging Face checkpoint of a family sdlens cannot plant into (encoders)."""
    out = os.path.join(tmp, family + "-random-hf")
    subprocess.run([sdlens, "random", "--family", family, "--layers", "1", "--vocab", "16", "--dtype", "bf16", "--out", out],
                   check=True, stdout=subprocess.DEVNULL)
    return out


def main():
    # fuzz_hf_config's seeds are config.json files written by hand, and regress-* files are
    # inputs that once failed (kept as they were found); the others are made here.
    for target in ("fuzz_gguf", "fuzz_safetensors", "fuzz_llama2c"):
        d = os.path.join(corpus, target)
        if os.path.isdir(d):
            for name in os.listdir(d):
                if not name.startswith("regress-"):
                    os.remove(os.path.join(d, name))
    with tempfile.TemporaryDirectory() as tmp:
        write("fuzz_safetensors", variants("bert.safetensors", safetensors_with_config(random_hf(tmp, "bert"))))
        for family in ("gemma2", "gemma3"):
            with open(random_gguf(tmp, family), "rb") as f:
                write("fuzz_gguf", variants(f"{family}.gguf", f.read()))
        for family in ("llama", "gpt2"):
            with open(os.path.join(plant(tmp, family, True), "model.gguf"), "rb") as f:
                write("fuzz_gguf", variants(f"{family}.gguf", f.read()))
            write("fuzz_safetensors", variants(f"{family}.safetensors", safetensors_with_config(plant(tmp, family, False))))
    write("fuzz_llama2c", variants("stories-shape.bin", llama2c_checkpoint()))
    write("fuzz_llama2c", variants("tokenizer.bin", llama2c_tokenizer()))


if __name__ == "__main__":
    main()
