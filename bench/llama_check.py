#!/usr/bin/env python3
"""Cross-check our converted GGUFs against llama.cpp and the Hugging Face reference.

For each tiny Imp fixture (tests/fixtures/models) and each quantization asked for, this
converts the checkpoint with our converter (crates/convert, `--example convert`), loads the
language-model GGUF with llama.cpp (llama-cpp-python 0.3.36 = llama.cpp 0c1e570) and:

* text: evaluates the reference text-only prompt ids, compares llama.cpp's logits at every
  position with the HF logits (`text.logits`), and prints the 32-token greedy continuation;
* image: replays each reference image prompt with the HF projector output spliced in as
  input embeddings (exactly the sequence HF generated from), greedy-decodes 32 tokens and
  compares them with the HF greedy tokens (`<image>.generated_ids`);
* mmproj: loads the companion mmproj GGUF with llama.cpp's mtmd, encodes the reference
  image (the exact pixels HF saw, so llama.cpp's resize is a no-op) and compares the
  projected embeddings with HF's `projector_output`.

Nothing is installed by this script. Set up once (builds llama.cpp from source, several
minutes on a 2-core machine):

    python3 -m venv bench/.venv
    bench/.venv/bin/pip install cmake ninja numpy
    PATH=$PWD/bench/.venv/bin:$PATH bench/.venv/bin/pip install llama-cpp-python==0.3.36

Run from the repository root:

    bench/.venv/bin/python bench/llama_check.py                 # F16 and Q8_0
    bench/.venv/bin/python bench/llama_check.py --quant Q4_0

Exit status 1 when a file does not load, or an F16 file disagrees with the reference.
"""

import argparse
import ctypes
import json
import pathlib
import struct
import subprocess
import sys

import numpy as np
import llama_cpp
from llama_cpp import mtmd_cpp

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
OUT = ROOT / "bench" / "out"
IMAGE_TOKEN = -200

# fixture dir -> reference name
CHECKPOINTS = {
    "imp-v1-3b-old": "imp-v1-3b",
    "imp-v1.5-3b-phi2": "imp-v1-3b",
    "imp-v1.5-3b-196": "imp-v1.5-3b-196",
    "imp-v1.5-2b-qwen1.5": "imp-v1.5-2b-qwen1.5",
    "imp-v1.5-4b-phi3": "imp-v1.5-4b-phi3",
}

DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}


def read_safetensors(path):
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        arr = np.frombuffer(data[8 + n + begin : 8 + n + end], dtype=DTYPES[info["dtype"]])
        out[name] = arr.reshape(info["shape"])
    return out


def convert(fixture, quant):
    out_dir = OUT / quant
    cmd = ["cargo", "run", "-q", "-p", "impchat-convert", "--example", "convert", "--",
           str(FIXTURES / "models" / fixture), str(out_dir), quant, "Q8_0" if quant == "Q8_0" else "F16", "--overwrite"]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"conversion failed: {result.stderr.strip()}")
    print("   ", result.stdout.strip().splitlines()[-1])
    vq = "Q8_0" if quant == "Q8_0" else "F16"
    return out_dir / f"{fixture}-{quant}.gguf", out_dir / f"mmproj-{fixture}-{vq}.gguf"


class Decoder:
    """Feeds token ids or input embeddings to a llama.cpp context, one sequence."""

    def __init__(self, llm):
        self.llm = llm
        self.ctx = llm._ctx.ctx
        self.n_embd = llm.n_embd()
        self.n_vocab = llm.n_vocab()
        self.pos = 0

    def reset(self):
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self.ctx), True)
        self.pos = 0

    def _decode(self, n, fill, all_logits):
        batch = llama_cpp.llama_batch_init(n, self.n_embd if fill is None else 0, 1)
        try:
            batch.n_tokens = n
            for i in range(n):
                batch.pos[i] = self.pos + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = 1 if (all_logits or i == n - 1) else 0
            if fill is not None:
                fill(batch)
            rc = llama_cpp.llama_decode(self.ctx, batch)
            if rc != 0:
                raise RuntimeError(f"llama_decode returned {rc}")
        finally:
            llama_cpp.llama_batch_free(batch)
        self.pos += n

    def tokens(self, ids, all_logits=False):
        def fill(batch):
            for i, t in enumerate(ids):
                batch.token[i] = int(t)
        self._decode(len(ids), fill, all_logits)

    def embeddings(self, rows):
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        batch = llama_cpp.llama_batch_init(len(rows), self.n_embd, 1)
        try:
            batch.n_tokens = len(rows)
            ctypes.memmove(batch.embd, rows.ctypes.data, rows.nbytes)
            for i in range(len(rows)):
                batch.pos[i] = self.pos + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = 0
            rc = llama_cpp.llama_decode(self.ctx, batch)
            if rc != 0:
                raise RuntimeError(f"llama_decode (embeddings) returned {rc}")
        finally:
            llama_cpp.llama_batch_free(batch)
        self.pos += len(rows)

    def logits(self, i=-1):
        ptr = llama_cpp.llama_get_logits_ith(self.ctx, i)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()

    def greedy(self, steps):
        out = []
        first = self.logits()
        logits = first
        for _ in range(steps):
            tok = int(np.argmax(logits))
            out.append(tok)
            self.tokens([tok])
            logits = self.logits()
        return out, first


def check_tokenizer(llm, meta):
    """llama.cpp's own tokenizer and chat template against HF's ids and Imp's prompt."""
    import jinja2  # installed with llama-cpp-python

    text = meta["text"]
    add_bos = llm.metadata.get("tokenizer.ggml.add_bos_token") == "true"
    ids = llm.tokenize(text["prompt"].encode(), add_bos=add_bos, special=True)
    same_ids = ids == text["prompt_ids"]
    turns = [{"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": "I am a small assistant."},
             {"role": "user", "content": "Tell me a story."}]
    rendered = jinja2.Environment().from_string(llm.metadata["tokenizer.chat_template"]).render(
        messages=turns, add_generation_prompt=True)
    same_prompt = rendered == text["prompt"]
    print(f"    llama.cpp tokenizer gives HF's ids: {same_ids}; chat template renders Imp's prompt: {same_prompt}")
    return same_ids and same_prompt


def check_text(dec, ref, meta):
    ids = meta["text"]["prompt_ids"]
    want = ref["text.logits"]
    dec.reset()
    dec.tokens(ids, all_logits=True)
    got = np.stack([dec.logits(i) for i in range(len(ids))])
    diff = float(np.max(np.abs(got - want)))
    agree = int(np.sum(np.argmax(got, 1) == np.argmax(want, 1)))
    greedy, _ = dec.greedy(32)
    print(f"    text prompt ({len(ids)} tokens): max |logit diff| {diff:.2e}, argmax agrees at {agree}/{len(ids)} positions")
    print(f"    text greedy (no HF reference): {greedy}")
    return diff, agree == len(ids)


def check_image(dec, ref, meta, image):
    info = meta["images"][image]
    ids = info["prompt_ids"]
    cut = ids.index(IMAGE_TOKEN)
    dec.reset()
    if cut:
        dec.tokens(ids[:cut])
    dec.embeddings(ref[f"{image}.projector_output"][0])
    dec.tokens(ids[cut + 1 :])
    greedy, first = dec.greedy(len(info["generated_ids"]))
    want = info["generated_ids"]
    diff = float(np.max(np.abs(first - ref[f"{image}.step_logits"][0])))
    same = sum(1 for a, b in zip(greedy, want) if a == b)
    prefix = next((i for i, (a, b) in enumerate(zip(greedy, want)) if a != b), len(want))
    status = "EQUAL" if greedy == want else f"first {prefix} equal, {same}/{len(want)} positions equal"
    print(f"    image {image}: greedy vs HF: {status}; first-step max |logit diff| {diff:.2e}")
    if greedy != want:
        print(f"      llama.cpp: {greedy}\n      HF:        {want}")
    return greedy == want


def check_mmproj(llm, mmproj_path, ref, image, image_tokens):
    params = mtmd_cpp.mtmd_context_params_default()
    params.use_gpu = False
    params.n_threads = 2
    params.print_timings = False
    params.warmup = False
    ctx = mtmd_cpp.mtmd_init_from_file(str(mmproj_path).encode(), llm._model.model, params)
    if not ctx:
        print(f"    mmproj: llama.cpp REJECTED {mmproj_path.name}")
        return False
    try:
        pixels = ref[f"{image}.pixel_values"][0]  # (3, S, S) in [-1, 1]
        rgb = np.clip(np.rint((pixels.transpose(1, 2, 0) * 0.5 + 0.5) * 255.0), 0, 255).astype(np.uint8)
        s = rgb.shape[0]
        buf = (ctypes.c_ubyte * rgb.nbytes).from_buffer_copy(rgb.tobytes())
        bitmap = mtmd_cpp.mtmd_bitmap_init(s, s, buf)
        chunks = mtmd_cpp.mtmd_input_chunks_init()
        text = mtmd_cpp.mtmd_input_text()
        marker = mtmd_cpp.mtmd_default_marker()
        text.text = marker
        text.text_len = len(marker)
        text.add_special = False
        text.parse_special = True
        bitmaps = (mtmd_cpp.mtmd_bitmap_p_ctypes * 1)(bitmap)
        rc = mtmd_cpp.mtmd_tokenize(ctx, chunks, ctypes.byref(text), bitmaps, 1)
        if rc != 0:
            print(f"    mmproj: mtmd_tokenize returned {rc}")
            return False
        embd = None
        for i in range(mtmd_cpp.mtmd_input_chunks_size(chunks)):
            chunk = mtmd_cpp.mtmd_input_chunks_get(chunks, i)
            if mtmd_cpp.mtmd_input_chunk_get_type(chunk) == mtmd_cpp.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                n = mtmd_cpp.mtmd_input_chunk_get_n_tokens(chunk)
                if mtmd_cpp.mtmd_encode_chunk(ctx, chunk) != 0:
                    print("    mmproj: mtmd_encode_chunk failed")
                    return False
                ptr = mtmd_cpp.mtmd_get_output_embd(ctx)
                embd = np.ctypeslib.as_array(ptr, shape=(n * llm.n_embd(),)).reshape(n, llm.n_embd()).copy()
        mtmd_cpp.mtmd_input_chunks_free(chunks)
        mtmd_cpp.mtmd_bitmap_free(bitmap)
        if embd is None:
            print("    mmproj: no image chunk")
            return False
        want = ref[f"{image}.projector_output"][0]
        if embd.shape != want.shape:
            print(f"    mmproj: llama.cpp gives {embd.shape} image embeddings, HF {want.shape} (Imp: {image_tokens} tokens)")
            return False
        diff = float(np.max(np.abs(embd - want)))
        rel = diff / float(np.max(np.abs(want)))
        print(f"    mmproj {image}: loads; {embd.shape[0]} image embeddings; max |diff| vs HF projector_output {diff:.2e} ({rel:.1%} of max)")
        return True
    finally:
        mtmd_cpp.mtmd_free(ctx)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quant", action="append", help="LM quantization(s); default F16 and Q8_0")
    parser.add_argument("--fixture", action="append", help="fixture dir name(s); default all")
    args = parser.parse_args()
    quants = args.quant or ["F16", "Q8_0"]
    fixtures = args.fixture or list(CHECKPOINTS)

    failed = False
    for fixture in fixtures:
        ref_name = CHECKPOINTS[fixture]
        ref = read_safetensors(FIXTURES / "reference" / f"{ref_name}.safetensors")
        meta = json.loads((FIXTURES / "reference" / f"{ref_name}.json").read_text())
        for quant in quants:
            print(f"== {fixture} {quant}")
            lm_path, mmproj_path = convert(fixture, quant)
            try:
                llm = llama_cpp.Llama(str(lm_path), n_threads=2, logits_all=True, verbose=False, n_ctx=512)
            except Exception as e:  # llama.cpp reports a rejected file as an exception
                print(f"    llama.cpp REJECTED {lm_path.name}: {e}")
                failed = True
                continue
            print(f"    llama.cpp loads {lm_path.name} ({lm_path.stat().st_size} bytes), n_vocab {llm.n_vocab()}")
            tok_ok = check_tokenizer(llm, meta)
            dec = Decoder(llm)
            _, text_ok = check_text(dec, ref, meta)
            images_ok = all([check_image(dec, ref, meta, image) for image in meta["images"]])
            mm_ok = all([check_mmproj(llm, mmproj_path, ref, image, meta["images"][image]["image_tokens"]) for image in meta["images"]])
            if quant == "F16" and not (text_ok and images_ok):
                failed = True
            failed |= not (mm_ok and tok_ok)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
