"""Times the prefill of a Llama checkpoint in torch eager: the reference side of `make bench-gpu`.

bench_gpu times our C++ prefill of a Hugging Face LlamaForCausalLM checkpoint and compares it with
"the same model in torch eager on the same GPU". This script is that torch side: it loads the
checkpoint, runs one forward over `--tokens` prompt ids (ids[i] = (1 + 7 i) % vocab, the rule
bench_gpu uses) and writes the median time and the last position's logits to OUT.json, so that
bench_gpu can check it ran the same model before it compares times.

The numerics follow transformers' LlamaForCausalLM with its default "sdpa" attention: RMSNorm in
f32, rotate-half rotary with cos/sin cast to the model dtype, grouped-query attention through
scaled_dot_product_attention(is_causal=True), SwiGLU MLP, logits for every position.

The GPU image has torch but neither transformers nor safetensors, so this needs torch and the
standard library only; it reads safetensors files itself.

Usage: python3 bench/torch_prefill.py MODEL_DIR OUT.json [--tokens 512] [--dtype bf16|f32]
                                      [--device cuda|cpu] [--repeats 7]
"""
import argparse
import json
import os
import statistics
import struct
import time

import torch
import torch.nn.functional as F

DTYPES = {"bf16": torch.bfloat16, "f32": torch.float32}
STORED = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}


def read_safetensors(path, device, dtype, out):
    """Adds the tensors of one .safetensors file to `out`, as `dtype` on `device`.

    Layout: u64 little-endian header length, a JSON header {name: {dtype, shape, data_offsets}}
    (offsets relative to the end of the header; "__metadata__" is not a tensor), then the data.
    One tensor is read at a time, so host memory peaks at the largest tensor, not the file.
    """
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
        header.pop("__metadata__", None)
        for name, info in header.items():
            if info["dtype"] not in STORED:
                raise SystemExit(f"[torch_prefill] {path}: {name} is {info['dtype']}; only F32, BF16, F16 are read")
            begin, end = info["data_offsets"]
            f.seek(8 + header_len + begin)
            data = bytearray(end - begin)  # writable, so torch.frombuffer does not warn
            f.readinto(data)
            t = torch.frombuffer(data, dtype=STORED[info["dtype"]]).reshape(info["shape"])
            out[name] = t.to(device=device, dtype=dtype)


def load_weights(model_dir, device, dtype):
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    weights = {}
    for name in files:
        read_safetensors(os.path.join(model_dir, name), device, dtype, weights)
    return weights


def load_config(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    if cfg.get("architectures") != ["LlamaForCausalLM"]:
        raise SystemExit(f"[torch_prefill] {model_dir}: architectures is {cfg.get('architectures')}, "
                         "only LlamaForCausalLM is supported")
    # transformers >= 4.57 moves rope_theta into rope_parameters; older ones keep rope_scaling.
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise SystemExit(f"[torch_prefill] {model_dir}: rotary type {rope}: only the default is supported")
    cfg.setdefault("rope_theta", rope.get("rope_theta", 10000.0))
    cfg.setdefault("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
    return cfg


def rms_norm(x, weight, eps):
    # As transformers' LlamaRMSNorm: normalise in f32, cast back, then scale.
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def forward(cfg, w, ids):
    """Logits [S, vocab] of one sequence `ids` at positions 0..S-1."""
    S, D, eps = ids.shape[0], cfg["head_dim"], cfg["rms_norm_eps"]
    n_heads, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    embed = w["model.embed_tokens.weight"]
    x = F.embedding(ids, embed)  # [S, hidden]

    # Rotary tables in f32, then cast to the model dtype, as LlamaRotaryEmbedding.
    inv_freq = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, D, 2, device=ids.device).float() / D))
    freqs = torch.outer(torch.arange(S, device=ids.device).float(), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)  # [S, D], broadcast over heads

    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        # [1, heads, S, D]: 4-d with batch 1 as transformers, so sdpa may pick its fused kernels.
        q = F.linear(h, w[p + "self_attn.q_proj.weight"]).view(1, S, n_heads, D).transpose(1, 2)
        k = F.linear(h, w[p + "self_attn.k_proj.weight"]).view(1, S, n_kv, D).transpose(1, 2)
        v = F.linear(h, w[p + "self_attn.v_proj.weight"]).view(1, S, n_kv, D).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        # Grouped-query attention: each kv head serves n_heads / n_kv query heads (repeat_kv).
        k = k.repeat_interleave(n_heads // n_kv, dim=1)
        v = v.repeat_interleave(n_heads // n_kv, dim=1)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        a = a.transpose(1, 2).reshape(S, n_heads * D)
        x = x + F.linear(a, w[p + "self_attn.o_proj.weight"])

        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        gate = F.silu(F.linear(h, w[p + "mlp.gate_proj.weight"]))
        x = x + F.linear(gate * F.linear(h, w[p + "mlp.up_proj.weight"]), w[p + "mlp.down_proj.weight"])

    x = rms_norm(x, w["model.norm.weight"], eps)
    lm_head = embed if cfg.get("tie_word_embeddings", False) else w["lm_head.weight"]
    return F.linear(x, lm_head)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("out")
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--dtype", choices=DTYPES, default="bf16")
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("[torch_prefill] --device cuda: torch sees no CUDA device")

    cfg = load_config(args.model_dir)
    w = load_weights(args.model_dir, args.device, DTYPES[args.dtype])
    vocab = cfg["vocab_size"]
    ids = torch.tensor([(1 + 7 * i) % vocab for i in range(args.tokens)], device=args.device)

    def sync():
        if args.device == "cuda":
            torch.cuda.synchronize()

    samples = []
    with torch.inference_mode():
        for _ in range(2):  # warm-up: kernel selection, allocator
            logits = forward(cfg, w, ids)
        for _ in range(args.repeats):
            sync()
            start = time.perf_counter()
            logits = forward(cfg, w, ids)
            sync()
            samples.append(time.perf_counter() - start)
    seconds = statistics.median(samples)

    result = {"model": args.model_dir, "tokens": args.tokens, "dtype": args.dtype, "device": args.device,
              "seconds": seconds, "samples": samples, "last_logits": logits[-1].float().cpu().tolist()}
    with open(args.out, "w") as f:
        json.dump(result, f)
    print(f"torch prefill: {args.tokens} tokens {args.dtype} on {args.device}: median {seconds * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
