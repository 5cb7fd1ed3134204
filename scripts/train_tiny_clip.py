"""Train a tiny open_clip CLIP on the embedded shapes world (CPU, step-budgeted).

    .venv/bin/python scripts/train_tiny_clip.py --tower rn    # -> tiny_shapes (300 steps)
    .venv/bin/python scripts/train_tiny_clip.py --tower vit   # -> tiny_shapes_vit (900 steps)
    .venv/bin/python scripts/train_tiny_clip.py --eval-only --tower rn   # measure the shipped one

A run is a fixed number of steps from a fixed seed: every batch is a pure function of
(seed, step), so a rerun reproduces the checkpoint (bit for bit with the same torch build and
thread count). The defaults are the shipped recipes (docs/SHAPES_WORLD.md). It
writes ``<out>/<name>.json`` (the open_clip model config) and ``<out>/<name>.pt`` (fp16
state dict) atomically, then measures the dense teacher's foreground mIoU on validation
scenes (background ignored, as in the annotation-free protocol) and prints it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from src.data.shapes import ShapesConfig, make_config  # noqa: E402
from src.data.shapes_captions import clip_pair  # noqa: E402
from src.utils.io import atomic_save_json, atomic_torch_save  # noqa: E402

TEXT_CFG = {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 3}
TOWERS = {
    "rn": {
        "name": "tiny_shapes",
        "steps": 300,
        "dense_mil": 0.0,
        "vision_cfg": {"image_size": 96, "layers": [1, 1, 1, 1], "width": 32, "head_width": 64},
    },
    "vit": {
        "name": "tiny_shapes_vit",
        "steps": 900,
        "dense_mil": 2.0,
        "vision_cfg": {
            "image_size": 96,
            "layers": 4,
            "width": 128,
            "head_width": 32,
            "mlp_ratio": 2.0,
            "patch_size": 16,
            "pool_type": "avg",
        },
    },
}


def templates() -> list[str]:
    """The teacher's 85 prompt templates (``{}`` format strings)."""
    from src.prompts import TEMPLATES

    return list(TEMPLATES)


def model_config(tower: str, embed_dim: int, vision_overrides: dict) -> dict:
    """The open_clip model config of a tower (``embed_dim``, ``vision_cfg``, ``text_cfg``)."""
    vision = {**TOWERS[tower]["vision_cfg"], **vision_overrides}
    return {"embed_dim": embed_dim, "vision_cfg": vision, "text_cfg": dict(TEXT_CFG)}


def build_clip(cfg: dict) -> torch.nn.Module:
    """An open_clip ``CLIP`` from a config dict (random weights)."""
    from open_clip.model import CLIP

    return CLIP(**cfg)


MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)


def to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    """uint8 HxWx3 images -> normalised float batch (CLIP mean/std)."""
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    return (x - MEAN) / STD


def make_batch(world: ShapesConfig, step: int, args: argparse.Namespace, temps: list[str]):
    """Batch ``step``: pairs from train scenes ``step * B .. step * B + B - 1``."""
    pairs = [
        clip_pair(
            world,
            step * args.batch_size + i,
            image_size=args.image_size,
            crop_prob=args.crop_prob,
            colour_prob=args.colour_prob,
            template_prob=args.template_prob,
            templates=temps,
        )
        for i in range(args.batch_size)
    ]
    match = torch.tensor([[p.matches(q.key) for q in pairs] for p in pairs], dtype=torch.float32)
    # presence of every shape kind / colour-shape phrase among the named shapes (dense MIL loss)
    kinds = [[float(any(k == kk for _, kk in p.shown)) for k in world.shapes] for p in pairs]
    fine = [[float((c, k) in p.shown) for k in world.shapes for c in world.colours] for p in pairs]
    images = to_tensor([p.image for p in pairs])
    return images, [p.text for p in pairs], match, torch.tensor(kinds), torch.tensor(fine)


class BatchStream(torch.utils.data.Dataset):
    """Batches by step index, so a worker process can draw them ahead of the model."""

    def __init__(self, world: ShapesConfig, args: argparse.Namespace, temps: list[str]) -> None:
        self.world, self.args, self.temps = world, args, temps

    def __len__(self) -> int:
        return self.args.steps

    def __getitem__(self, step: int):
        return make_batch(self.world, step, self.args, self.temps)


def contrastive_loss(img, txt, scale, match, multi_positive: bool) -> torch.Tensor:
    """CLIP loss; with ``multi_positive`` every caption that describes an image is a target."""
    logits = scale * img @ txt.t()
    if not multi_positive:
        target = torch.arange(len(img))
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
    t_i = match / match.sum(1, keepdim=True)  # image i -> its matching captions
    t_t = match.t() / match.t().sum(1, keepdim=True)  # caption j -> its matching images
    return (F.cross_entropy(logits, t_i) + F.cross_entropy(logits.t(), t_t)) / 2


def vit_global_and_dense(visual, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass of an open_clip ViT (``pool_type='avg'``): its image embedding, and the
    teacher's dense features (last block's value path, as ``src.teacher.features.vit_dense``)
    from the same trunk, so the dense term costs one block, not a second forward pass."""
    blocks = visual.transformer.resblocks
    last = blocks[-1]
    trunk_out = {}

    def grab(module, args):  # the input of the last block = output of the trunk
        trunk_out["x"] = args[0]

    handle = last.register_forward_pre_hook(grab)
    try:
        emb = visual(x)
    finally:
        handle.remove()
    t = trunk_out["x"]
    attn = last.attn
    w_v = attn.in_proj_weight.chunk(3, dim=0)[2]
    b_v = attn.in_proj_bias.chunk(3, dim=0)[2]
    v = t + last.ls_1(attn.out_proj(F.linear(last.ln_1(t), w_v, b_v)))
    v = v + last.ls_2(last.mlp(last.ln_2(v)))
    v = visual.ln_post(v) @ visual.proj
    b, p = x.shape[0], visual.patch_size[0]
    dense = v[:, 1:].transpose(1, 2).reshape(b, -1, x.shape[2] // p, x.shape[3] // p)
    return emb, dense


def dense_mil_loss(
    model, tokenizer, world: ShapesConfig, feats, kinds, fine, template: str, scale=20.0
):
    """Optional multiple-instance term on the teacher's own dense head (``--dense-mil``).

    Every location's DenseCLIP feature ``feats`` (B, D, h, w) is classified (softmax) among
    the shape kinds and, separately, among the colour-shape phrases; a phrase's image score is
    its best location's probability, trained with binary cross-entropy against the shapes
    named in the caption.
    """
    phrases = list(world.shapes) + [f"{c} {k}" for k in world.shapes for c in world.colours]
    text = F.normalize(model.encode_text(tokenizer([template.format(p) for p in phrases])), dim=-1)
    logits = scale * torch.einsum("bdp,kd->bkp", F.normalize(feats.flatten(2), dim=1), text)
    n = len(world.shapes)
    loss = 0.0
    for part, target in ((logits[:, :n], kinds), (logits[:, n:], fine)):
        score = part.softmax(dim=1).amax(dim=-1).clamp(1e-6, 1 - 1e-6)
        loss = loss + F.binary_cross_entropy(score, target)
    return loss


# ------------------------------------------------------------------------ dense evaluation


def dense_logits(model, text: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B, K, H, W) cosine logits of the project's dense head on a model being trained."""
    from src.teacher.features import dense_extractor, output_stride, pad_to_multiple

    with torch.no_grad():
        h, w = x.shape[-2:]
        stride = output_stride(model.visual)
        feats = dense_extractor(model.visual)(model.visual, x)[0]
        cos = torch.einsum("bdhw,kd->bkhw", F.normalize(feats.float(), dim=1), text)
        ph, pw = pad_to_multiple(x[:1, :1], stride).shape[-2:]
        cos = F.interpolate(cos, size=(ph, pw), mode="bilinear", align_corners=False)
        return cos[..., :h, :w]


def fg_miou(pred: np.ndarray, gt: np.ndarray, k: int) -> tuple[float, list[float]]:
    """Foreground mIoU: ``gt`` 1..k (0 = background, ignored), ``pred`` 0..k-1."""
    keep = gt > 0
    conf = np.bincount((gt[keep] - 1) * k + pred[keep], minlength=k * k).reshape(k, k)
    inter = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - inter
    present = conf.sum(1) > 0
    ious = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    return float(ious[present].mean()), [float(i) for i in ious]


def scenes_miou(predict, names: list[str], samples) -> tuple[float, list[float]]:
    """fg mIoU of ``predict(x) -> (B, K, H, W)`` over (image, mask) pairs, batched by size."""
    preds, gts = [], []
    batch: list = []

    def flush() -> None:
        x = to_tensor([im for im, _ in batch])
        preds.append(predict(x).argmax(1).numpy().ravel())
        gts.append(np.concatenate([m.ravel() for _, m in batch]))
        batch.clear()

    for image, mask in samples:
        if batch and (len(batch) == 32 or batch[0][0].shape != image.shape):
            flush()
        batch.append((image, mask))
    if batch:
        flush()
    return fg_miou(np.concatenate(preds), np.concatenate(gts).astype(np.int64), len(names))


def val_scenes(world: ShapesConfig, n: int):
    """(image, mask) of the first ``n`` validation scenes of ``world``."""
    from src.data.shapes import render_scene

    for i in range(n):
        s = render_scene(world, i, "val")
        yield s.image, s.mask


def evaluate(model, tokenizer, world: ShapesConfig, n_scenes: int, temps: list[str]):
    """Quick dense fg mIoU of a model being trained (the teacher's head and prompts)."""
    from src.teacher.text import encode_class_names

    model.eval()
    text = encode_class_names(model.encode_text, tokenizer, world.class_names, temps)
    out = scenes_miou(
        lambda x: dense_logits(model, text, x), world.class_names, val_scenes(world, n_scenes)
    )
    model.train()
    return out


def teacher_report(name: str, weights_dir: Path, world: ShapesConfig, n_scenes: int) -> dict:
    """fg mIoU of ``DenseClipTeacher(clip_model=name, pretrained=<weights_dir>/<name>.pt)``:
    the default world, the independent renderer, and colour-shape phrases."""
    from dataclasses import replace

    import open_clip

    from src.data.shapes_independent import IndependentConfig, render_independent
    from src.teacher.model import DenseClipTeacher

    open_clip.add_model_config(weights_dir)
    teacher = DenseClipTeacher(
        clip_model=name, pretrained=str(weights_dir / f"{name}.pt"), class_names=world.class_names
    )
    out: dict = {}
    miou, per = scenes_miou(teacher, world.class_names, val_scenes(world, n_scenes))
    out["teacher_fg_miou"] = round(miou, 4)
    out["teacher_fg_iou"] = dict(zip(world.class_names, [round(i, 4) for i in per], strict=True))
    ind = IndependentConfig(shapes=world.shapes)
    samples = (render_independent(ind, i, "val")[:2] for i in range(n_scenes))
    out["independent_fg_miou"] = round(scenes_miou(teacher, ind.class_names, samples)[0], 4)
    fine = replace(world, colour_classes=True)
    teacher.set_class_names(fine.class_names)
    miou, per = scenes_miou(teacher, fine.class_names, val_scenes(fine, n_scenes))
    out["colour_shape_fg_miou"] = round(miou, 4)
    out["colour_shape_chance"] = round(1 / len(fine.class_names), 4)
    return out


# ------------------------------------------------------------------------ training


def param_groups(model, wd: float):
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "logit_scale" in n or "embedding" in n else decay).append(p)
    return [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--tower", choices=list(TOWERS), default="rn")
    ap.add_argument("--name", default=None, help="model name (default: by tower)")
    ap.add_argument("--steps", type=int, default=None, help="default: the tower's shipped recipe")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--warmup", type=float, default=0.05, help="fraction of steps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--embed-dim", type=int, default=128)
    ap.add_argument("--vision", type=json.loads, default={}, help="JSON overrides of vision_cfg")
    ap.add_argument("--world", type=json.loads, default={}, help="JSON ShapesConfig options")
    ap.add_argument("--crop-prob", type=float, default=0.5)
    ap.add_argument("--colour-prob", type=float, default=0.5)
    ap.add_argument("--template-prob", type=float, default=0.5)
    ap.add_argument(
        "--multi-positive", type=int, default=1, help="1: every matching caption is a target"
    )
    ap.add_argument(
        "--dense-mil",
        type=float,
        default=None,
        help="weight of the dense MIL term (0: plain CLIP; default: the tower's recipe)",
    )
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 beat 2 on 2 busy cores)"
    )
    ap.add_argument("--workers", type=int, default=1, help="data worker processes (0: inline)")
    ap.add_argument("--eval-every", type=int, default=0, help="steps between quick evals (0: none)")
    ap.add_argument("--eval-scenes", type=int, default=240)
    ap.add_argument("--eval-only", action="store_true", help="only measure <out>/<name>.pt")
    ap.add_argument("--out", type=Path, default=ROOT / "src" / "teacher" / "weights")
    ap.add_argument("--log-dir", type=Path, default=ROOT / "logs" / "train_tiny_clip")
    args = ap.parse_args(argv)
    args.name = args.name or TOWERS[args.tower]["name"]
    args.steps = args.steps or TOWERS[args.tower]["steps"]
    if args.dense_mil is None:
        args.dense_mil = TOWERS[args.tower]["dense_mil"]
    return args


def main(argv=None) -> dict:
    import open_clip

    from src.teacher.features import dense_extractor

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    world = make_config(**{"seed": args.seed, **args.world})
    if args.eval_only:
        report = teacher_report(args.name, args.out, world, args.eval_scenes)
        print(json.dumps(report, indent=1))
        return report
    cfg = model_config(args.tower, args.embed_dim, args.vision)
    args.image_size = cfg["vision_cfg"]["image_size"]
    model = build_clip(cfg)
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=TEXT_CFG["context_length"])
    temps = templates()
    opt = torch.optim.AdamW(param_groups(model, args.wd), lr=args.lr, betas=(0.9, 0.98), eps=1e-6)
    warm = max(1, int(args.warmup * args.steps))

    def lr_at(step: int) -> float:
        if step < warm:
            return args.lr * (step + 1) / warm
        t = (step - warm) / max(1, args.steps - warm)
        return args.lr * 0.5 * (1 + math.cos(math.pi * t))

    n_params = sum(p.numel() for p in model.parameters())
    print(f"{args.name}: {n_params / 1e6:.2f}M parameters; {args.steps} steps of {args.batch_size}")
    history: list[dict] = []
    t0 = time.time()
    data_s = 0.0
    loader = torch.utils.data.DataLoader(
        BatchStream(world, args, temps),
        batch_size=None,
        shuffle=False,
        num_workers=args.workers,
        prefetch_factor=2 if args.workers else None,
    )
    bar = tqdm(loader, desc=args.name, mininterval=5, total=args.steps)
    td = time.time()
    for step, (x, texts, match, kinds, fine) in enumerate(bar):
        data_s += time.time() - td
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        if args.dense_mil > 0 and args.tower == "vit":
            emb, feats = vit_global_and_dense(model.visual, x)
        else:
            emb = model.encode_image(x)
            if args.dense_mil > 0:
                feats = dense_extractor(model.visual)(model.visual, x)[0]
        img = F.normalize(emb, dim=-1)
        txt = F.normalize(model.encode_text(tokenizer(texts)), dim=-1)
        loss = contrastive_loss(img, txt, model.logit_scale.exp(), match, bool(args.multi_positive))
        if args.dense_mil > 0:
            template = temps[step % len(temps)]
            mil = dense_mil_loss(model, tokenizer, world, feats, kinds, fine, template)
            loss = loss + args.dense_mil * mil
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if args.eval_every and (step + 1) % args.eval_every == 0 and step + 1 < args.steps:
            miou, per = evaluate(model, tokenizer, world, min(96, args.eval_scenes), temps)
            rec = {
                "step": step + 1,
                "loss": loss.item(),
                "fg_miou96": miou,
                "wall_s": time.time() - t0,
            }
            history.append(rec)
            tqdm.write(json.dumps(rec))
        td = time.time()
    train_s = time.time() - t0

    state = {
        k: v.detach().to(torch.float16) if v.is_floating_point() else v
        for k, v in model.state_dict().items()
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_save_json(args.out / f"{args.name}.json", cfg)
    atomic_torch_save(args.out / f"{args.name}.pt", state)
    size_mb = (args.out / f"{args.name}.pt").stat().st_size / 1e6

    # Evaluate the saved (fp16) weights through the project's teacher, as users load them.
    try:
        report = teacher_report(args.name, args.out, world, args.eval_scenes)
    except Exception as err:  # keep the run's record; measure later with --eval-only
        report = {"teacher_fg_miou": float("nan"), "teacher_report_error": repr(err)}
    result = {
        "name": args.name,
        "steps": args.steps,
        "train_s": round(train_s, 1),
        "data_wait_s": round(data_s, 1),
        "steps_per_s": round(args.steps / train_s, 3),
        "final_loss": round(loss.item(), 4),
        "checkpoint_mb": round(size_mb, 2),
        **report,
        "eval_scenes": args.eval_scenes,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "history": history,
    }
    atomic_save_json(args.log_dir / args.name / "metrics.json", result)
    print(json.dumps({k: v for k, v in result.items() if k not in ("args", "history")}, indent=1))
    print(
        f"teacher foreground mIoU ({args.eval_scenes} val scenes): {report['teacher_fg_miou']:.4f}"
    )
    return result


if __name__ == "__main__":
    main()
