#!/usr/bin/env python3
"""Writes the small hand-made seeds of corpus/{gguf,safetensors,archive_import,server_request}.

Standard library only. The image seeds (corpus/image_decode) were made with ImageMagick
(see README.md); the template_splice seeds were found by the fuzzer itself.
Run from anywhere: python3 tests/fuzz/make_seeds.py
"""
import base64
import hashlib
import io
import json
import struct
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
TINY_PNG = (CORPUS / "image_decode" / "rgb-7x5.png").read_bytes()


def write(target, name, data):
    path = CORPUS / target / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


# --- GGUF (v3): a few metadata kinds and one tensor per storage type ----------------------
GGUF_STRING, GGUF_ARRAY, GGUF_U32, GGUF_F32, GGUF_BOOL, GGUF_U64 = 8, 9, 4, 6, 7, 10
# ggml type id -> (block values, block bytes)
GGML = {"F32": (0, 1, 4), "F16": (1, 1, 2), "Q4_0": (2, 32, 18), "Q8_0": (8, 32, 34),
        "Q4K": (12, 256, 144), "Q6K": (14, 256, 210)}


def gguf_str(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf_value(kind, value):
    if kind == GGUF_STRING:
        return gguf_str(value)
    if kind == GGUF_U32:
        return struct.pack("<I", value)
    if kind == GGUF_U64:
        return struct.pack("<Q", value)
    if kind == GGUF_F32:
        return struct.pack("<f", value)
    if kind == GGUF_BOOL:
        return struct.pack("<B", value)
    item_kind, items = value
    return struct.pack("<IQ", item_kind, len(items)) + b"".join(gguf_value(item_kind, i) for i in items)


def gguf(metadata, tensors, alignment=32):
    """metadata: [(key, kind, value)]; tensors: [(name, dtype, shape in candle order)]."""
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata))
    for key, kind, value in metadata:
        out += gguf_str(key) + struct.pack("<I", kind) + gguf_value(kind, value)
    data, infos = b"", b""
    for name, dtype, shape in tensors:
        type_id, block, block_bytes = GGML[dtype]
        values = 1
        for d in shape:
            values *= d
        size = values // block * block_bytes
        infos += gguf_str(name) + struct.pack("<I", len(shape))
        infos += b"".join(struct.pack("<Q", d) for d in reversed(shape))
        infos += struct.pack("<IQ", type_id, len(data))
        # Small, varied bytes; f16 scales of quantized blocks stay finite.
        data += bytes((i * 7 + 3) % 61 for i in range(size))
        data += b"\0" * (-len(data) % alignment)
    out += infos
    out += b"\0" * (-len(out) % alignment)
    return out + data


META = [("general.architecture", GGUF_STRING, "phi2"), ("general.alignment", GGUF_U32, 32),
        ("phi2.context_length", GGUF_U32, 2048), ("phi2.block_count", GGUF_U64, 2),
        ("phi2.attention.layer_norm_epsilon", GGUF_F32, 1e-5), ("imp.flag", GGUF_BOOL, 1),
        ("tokenizer.ggml.tokens", GGUF_ARRAY, (GGUF_STRING, ["<s>", "a", "b"]))]
write("gguf", "metadata-only.gguf", gguf(META, []))
write("gguf", "f32-f16.gguf", gguf(META[:2], [("norm.weight", "F32", [4]), ("emb.weight", "F16", [2, 4])]))
for dtype, rows in [("Q4_0", 16), ("Q8_0", 16), ("Q4K", 2), ("Q6K", 2)]:
    cols = GGML[dtype][1]
    write("gguf", f"{dtype.lower()}-{rows}x{cols}.gguf",
          gguf(META[:1], [("blk.0.ffn_up.weight", dtype, [rows, cols]), ("blk.0.ffn_up.bias", "F32", [rows])]))
write("gguf", "clip-mmproj.gguf", gguf([("general.architecture", GGUF_STRING, "clip"),
                                        ("clip.vision.image_size", GGUF_U32, 384)],
                                       [("v.patch_embd.weight", "F16", [2, 3, 2, 2])]))


# --- safetensors: byte 0 even = one file; odd = u16 index length, index, u32 shard length --
def safetensors(tensors, metadata=None):
    header, data = {}, b""
    sizes = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8, "U8": 1, "BOOL": 1}
    for name, dtype, shape in tensors:
        n = sizes[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + n]}
        data += bytes((i * 5 + 1) % 2 if dtype == "BOOL" else (i * 5 + 1) % 57 for i in range(n))
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


SHARDS = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
write("safetensors", "single-f32.bin", b"\0" + safetensors([("a", "F32", [2, 3])], {"format": "pt"}))
write("safetensors", "single-mixed.bin", b"\0" + safetensors(
    [("w", "F16", [3, 2]), ("b", "BF16", [3]), ("ids", "I64", [2]), ("mask", "BOOL", [4]), ("s", "F32", [])]))
first = safetensors([("model.layers.0.w", "F16", [2, 2])], {"format": "pt"})
second = safetensors([("lm_head.weight", "F32", [2, 2])])
index = json.dumps({"metadata": {"total_size": 24},
                    "weight_map": {"model.layers.0.w": SHARDS[0], "lm_head.weight": SHARDS[1]}}).encode()
write("safetensors", "sharded.bin",
      b"\1" + struct.pack("<H", len(index)) + index + struct.pack("<I", len(first)) + first + second)


# --- archive_import: an export as Store::export_archive writes it --------------------------
def archive(conversations, images, manifest_version=1):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("manifest.json", json.dumps({
            "format": "impchat-archive", "formatVersion": manifest_version, "appVersion": "0.1.0",
            "schemaVersion": 3, "exportedAt": 1700000000000,
            "conversations": len(conversations), "images": len(images)}))
        z.writestr("conversations.json", json.dumps(conversations))
        for data in images:
            info = zipfile.ZipInfo(f"images/{hashlib.sha256(data).hexdigest()}.png")
            info.compress_type = zipfile.ZIP_STORED
            z.writestr(info, data)
    return buf.getvalue()


def message(mid, parent, role, content, images=(), status="complete", **extra):
    m = {"id": mid, "parentId": parent, "role": role, "content": content, "status": status,
         "error": None, "createdAt": 1700000000000, "stats": None, "provenance": None,
         "images": list(images)}
    m.update(extra)
    return m


def conversation(cid, messages, leaf):
    return {"id": cid, "originId": cid, "title": "Receipt", "autoTitle": False,
            "createdAt": 1700000000000, "updatedAt": 1700000000500, "pinned": True,
            "modelId": "imp-v1.5-3b", "deletedAt": None, "systemPrompt": "Be brief.",
            "settings": {"temperature": 0}, "currentLeafId": leaf, "messages": messages,
            "contentHash": ""}


sha = hashlib.sha256(TINY_PNG).hexdigest()
tree = [message("m1", None, "user", "<image>\nWhat is the total?", [sha]),
        message("m2", "m1", "assistant", "12.50", stats={"tokens": 3}),
        message("m3", "m1", "assistant", "It is 12.50", status="streaming")]
write("archive_import", "with-image.zip", archive([conversation("c1", tree, "m3")], [TINY_PNG]))
write("archive_import", "text-only.zip", archive([conversation("c2", [message("a", None, "user", "hi")], "a")], []))
write("archive_import", "empty.zip", archive([], []))
write("archive_import", "too-new.zip", archive([], [], manifest_version=2))


# --- server_request: chat-completions bodies ----------------------------------------------
data_url = "data:image/png;base64," + base64.b64encode(TINY_PNG).decode()
bodies = {
    "text.json": {"model": "imp", "messages": [{"role": "user", "content": "Hello"}]},
    "image-parts.json": {"model": "imp", "max_tokens": 64, "temperature": 0.7, "top_p": 0.9,
                         "top_k": 40, "seed": 7, "stop": ["</s>", "\n\n"], "stream": True,
                         "stream_options": {"include_usage": True},
                         "messages": [{"role": "system", "content": "Be brief."},
                                      {"role": "user", "content": [
                                          {"type": "text", "text": "What is this?"},
                                          {"type": "image_url", "image_url": {"url": data_url}}]}]},
    "history.json": {"model": "imp", "max_completion_tokens": 5, "stop": "END", "n": 1,
                     "messages": [{"role": "developer", "content": "Rules"},
                                  {"role": "user", "content": [{"type": "image_url", "image_url": data_url}]},
                                  {"role": "assistant", "content": None},
                                  {"role": "user", "content": "And now?"}]},
    "refused.json": {"model": "imp", "tools": [{"type": "function"}], "logprobs": True,
                     "frequency_penalty": 0.5,
                     "messages": [{"role": "tool", "content": [{"type": "input_audio"}]}]},
}
for name, body in bodies.items():
    write("server_request", name, json.dumps(body).encode())
