#!/usr/bin/env python3
"""Recovery of a magnitude-pruned MiniLM written in plain PyTorch, the way a user would
write it: the baseline `cargo xtask vs-torch` runs beside `sparsewire-eval recover`.

Optional, like scripts/peers.py: it needs torch, transformers and safetensors
(`pip install torch transformers safetensors`), which sparsewire itself never uses.

What it does (the recipe of issue #13's side-by-side):
- teacher: all-MiniLM-L6-v2 from ../shared/data (the bf16 weights, computed in f32), frozen;
- student: a copy with every encoder linear weight and the word embeddings pruned by
  magnitude (torch.nn.utils.prune: l1_unstructured per tensor, or a 2:4 mask over each run
  of 4 input weights), masks fixed;
- loss: (1 - cosine) of the mean-pooled embeddings + the mean over the layers of the
  hidden-state MSE (padding excluded); AdamW (lr 5e-5, torch's defaults otherwise, constant
  rate), batches of 32 sentences of the training text (the first --train-lines lines of
  WordNet's examples, shuffled with --seed);
- held-out score: mean cosine to the teacher's embeddings on the --heldout lines after the
  training lines (the same lines `sparsewire-eval recover` holds out), at the start and
  every --eval-every seconds of training; the training clock stops while it scores.

Writes one JSON object (--out, or stdout): the settings, versions and the curve
(`seconds`, `step`, `loss`, `heldout_cosine`).
"""

import argparse
import json
import os
import random
import sys
import time


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    p.add_argument("--pattern", choices=["unstructured", "2:4"], default="unstructured")
    p.add_argument("--sparsity", type=float, default=0.5, help="unstructured only (2:4 is 0.5)")
    p.add_argument("--seconds", type=float, default=900.0, help="training seconds (scoring excluded)")
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--train-lines", type=int, default=20000)
    p.add_argument("--heldout", type=int, default=200)
    p.add_argument("--eval-every", type=float, default=60.0, help="seconds of training between held-out scores")
    p.add_argument("--max-len", type=int, default=128)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", help="JSON file to write (default: stdout)")
    a = p.parse_args()
    if not (0.0 <= a.sparsity < 1.0) or a.seconds <= 0 or a.batch < 1 or a.eval_every <= 0:
        p.error("--sparsity must be in [0, 1); --seconds, --batch and --eval-every positive")

    try:
        import torch
        import torch.nn.functional as F
        from safetensors.torch import load_file
        from torch.nn.utils import prune
        from transformers import AutoTokenizer, BertConfig, BertModel
        import transformers
    except ImportError as e:
        sys.exit(f"torch_recover.py needs torch, transformers and safetensors: {e}")

    torch.manual_seed(a.seed)
    random.seed(a.seed)
    torch.set_num_threads(a.threads)
    tok_dir = os.path.join(a.data, "minilm_l6_v2_tokenizer")
    weights = os.path.join(a.data, "minilm_l6_v2.bf16.safetensors")
    text = os.path.join(a.data, "text", "wordnet_examples.txt")
    for f in (tok_dir, weights, text):
        if not os.path.exists(f):
            sys.exit(f"{f}: not found (--data is the folder with the shared models)")

    cfg = BertConfig.from_pretrained(tok_dir)
    state = {k: v.float() for k, v in load_file(weights).items()}

    def model():
        m = BertModel(cfg, add_pooling_layer=False)
        missing, _ = m.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith("position_ids")]
        if missing:
            sys.exit(f"{weights}: missing {missing}")
        return m

    teacher = model().eval()
    for q in teacher.parameters():
        q.requires_grad_(False)
    student = model()

    # Magnitude pruning of every encoder linear weight and the word embeddings, masks fixed.
    targets = [m for n, m in student.named_modules() if isinstance(m, torch.nn.Linear) and n.startswith("encoder.")]
    targets.append(student.embeddings.word_embeddings)
    for m in targets:
        if a.pattern == "unstructured":
            prune.l1_unstructured(m, "weight", amount=a.sparsity)
        else:
            w = m.weight.detach()
            groups = w.abs().reshape(-1, 4)
            keep = torch.zeros_like(groups)
            keep.scatter_(1, groups.topk(2, dim=1).indices, 1.0)
            prune.custom_from_mask(m, "weight", keep.reshape(w.shape))
    dropped = sum(int((m.weight_mask == 0).sum()) for m in targets)
    total = sum(m.weight_mask.numel() for m in targets)

    with open(text, encoding="utf-8") as f:
        lines = [l.strip() for l in f if l.strip()][: a.train_lines + a.heldout]
    train, held = lines[: -a.heldout], lines[-a.heldout:]
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)

    def encode(batch):
        return tokenizer(batch, padding=True, truncation=True, max_length=a.max_len, return_tensors="pt")

    def pooled(out, mask):
        m = mask.unsqueeze(-1).float()
        e = (out.last_hidden_state * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return F.normalize(e, dim=-1)

    def embed(net, sentences):
        net.eval()
        es = []
        with torch.no_grad():
            for i in range(0, len(sentences), 50):
                b = encode(sentences[i : i + 50])
                es.append(pooled(net(**b), b["attention_mask"]))
        return torch.cat(es)

    t_held = embed(teacher, held)

    def heldout_cosine():
        s = embed(student, held)
        student.train()
        return float((s * t_held).sum(-1).mean())

    opt = torch.optim.AdamW([q for q in student.parameters() if q.requires_grad], lr=a.lr)
    order = list(range(len(train)))
    rng = random.Random(a.seed)
    rng.shuffle(order)
    at, step, trained = 0, 0, 0.0
    curve = [{"seconds": 0.0, "step": 0, "loss": None, "heldout_cosine": heldout_cosine()}]
    print(f"post hoc: held-out cosine {curve[0]['heldout_cosine']:.5f} ({dropped / total:.3f} of the pruned weights dropped)", file=sys.stderr)
    next_eval = a.eval_every
    student.train()
    while trained < a.seconds:
        t0 = time.perf_counter()
        if at + a.batch > len(order):
            rng.shuffle(order)
            at = 0
        batch = [train[i] for i in order[at : at + a.batch]]
        at += a.batch
        b = encode(batch)
        with torch.no_grad():
            t = teacher(**b, output_hidden_states=True)
        s = student(**b, output_hidden_states=True)
        mask = b["attention_mask"]
        loss = (1 - (pooled(s, mask) * pooled(t, mask)).sum(-1)).mean()
        m = mask.unsqueeze(-1).float()
        layers = range(1, len(s.hidden_states))
        mse = sum(((s.hidden_states[i] - t.hidden_states[i]) ** 2 * m).sum() / (m.sum() * cfg.hidden_size) for i in layers) / len(layers)
        loss = loss + mse
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        trained += time.perf_counter() - t0
        if not torch.isfinite(loss):
            sys.exit(f"the loss is {float(loss)} at step {step}")
        row = {"seconds": trained, "step": step, "loss": loss.item(), "heldout_cosine": None}
        if trained >= next_eval or trained >= a.seconds:
            row["heldout_cosine"] = heldout_cosine()
            next_eval += a.eval_every
            print(f"{trained:7.1f} s step {step:5d} loss {row['loss']:.5f} held-out cosine {row['heldout_cosine']:.5f}", file=sys.stderr)
        curve.append(row)

    result = {
        "tool": "pytorch",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": a.threads,
        "pattern": a.pattern,
        "sparsity": 0.5 if a.pattern == "2:4" else a.sparsity,
        "dropped_fraction": dropped / total,
        "lr": a.lr,
        "batch": a.batch,
        "seed": a.seed,
        "train_sentences": len(train),
        "heldout_sentences": len(held),
        "seconds": trained,
        "steps": step,
        "post_hoc_heldout": curve[0]["heldout_cosine"],
        "heldout_cosine": curve[-1]["heldout_cosine"],
        "curve": curve,
    }
    text_out = json.dumps(result, indent=1)
    if a.out:
        tmp = a.out + ".tmp"
        with open(tmp, "w") as f:
            f.write(text_out)
        os.replace(tmp, a.out)
    else:
        print(text_out)


if __name__ == "__main__":
    main()
