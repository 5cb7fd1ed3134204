"""Train the shapes world's proxy ViT (``teacher.proxy=tiny_shapes_dino``) self-supervised, no labels.

    .venv/bin/python scripts/train_tiny_proxy.py                 # -> src/teacher/weights/tiny_shapes_dino.pt
    .venv/bin/python scripts/train_tiny_proxy.py --steps 0 --out /tmp/p --name random  # the random control
    .venv/bin/python scripts/train_tiny_proxy.py --eval-only     # measure the shipped file

ProxyCLIP and CorrCLIP read a DINO ViT's patch features (docs/TEACHERS.md); no DINO weights
exist offline, so this trains a small one on the shapes world, the way the tiny CLIPs were
trained (docs/SHAPES_WORLD.md): the timm architecture of :data:`src.teacher.proxy.TINY_SHAPES_DINO`
(patch 8: a 16 x 16 proxy grid on the 128-px scenes, finer than the tiny CLIP's 8 x 8),
trained by self-distillation without labels:

- **DINO** (Caron et al., 2021): an EMA teacher sees two global crops, the student those and
  local crops (multi-crop); the student's class-token distribution over prototypes is pulled to
  the teacher's of the other views (teacher centred and sharpened);
- **iBOT's masked patch distillation** (Zhou et al., 2022), because the proxy is read per
  patch: in the global crops the student gets, a random share of the patches is replaced by a
  learnt mask token, and its patch distributions there are pulled to the teacher's
  (unmasked) ones of the same patches.

A run is a fixed number of steps from a fixed seed: the scenes of step ``s`` are train scenes
``s*B .. s*B+B-1`` (mod ``--scenes``) and every crop, flip, jitter and mask is drawn from
``numpy default_rng([seed, s])``, so a rerun reproduces the weights (same torch build, one
thread). It writes ``<out>/<name>.pt`` (the ViT's fp16 timm state dict, no heads) atomically,
then measures ProxyCLIP and CorrCLIP with it on validation scenes (the labels are used only
there) and writes ``logs/train_tiny_proxy/<name>/metrics.json`` (CPU time, steps, loss,
numbers, arguments).
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
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from src.data.shapes import ShapesConfig, make_config, render_scene  # noqa: E402
from src.teacher.proxy import PROXIES, SHIPPED_DIR, ProxyViT  # noqa: E402
from src.utils.io import atomic_save_json, atomic_torch_save  # noqa: E402

NAME = "tiny_shapes_dino"


# ------------------------------------------------------------------------ data


class Scenes:
    """The first ``n`` train scenes of ``world`` as float tensors (3, H, W) in [0, 1], drawn
    once each on first use."""

    def __init__(self, world: ShapesConfig, n: int) -> None:
        self.world, self.n = world, n
        self.cache: dict[int, torch.Tensor] = {}

    def __getitem__(self, index: int) -> torch.Tensor:
        index %= self.n
        if index not in self.cache:
            image = render_scene(self.world, index, "train").image
            self.cache[index] = torch.from_numpy(image).permute(2, 0, 1).float() / 255.0
        return self.cache[index]


def random_crop(
    image: torch.Tensor, rng: np.random.Generator, scale: tuple[float, float], size: int
) -> torch.Tensor:
    """A random resized crop (area share in ``scale``, aspect 3/4..4/3) of a (3, H, W) image,
    flipped with probability 0.5, brightness and contrast jittered by up to 20% (hues kept:
    colour is what the world's classes are made of)."""
    _, h, w = image.shape
    area = h * w * rng.uniform(*scale)
    aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
    ch = int(round(min(h, max(8, math.sqrt(area / aspect)))))
    cw = int(round(min(w, max(8, math.sqrt(area * aspect)))))
    top = int(rng.integers(0, h - ch + 1))
    left = int(rng.integers(0, w - cw + 1))
    crop = image[:, top : top + ch, left : left + cw][None]
    crop = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False)[0]
    if rng.random() < 0.5:
        crop = crop.flip(-1)
    bright = float(rng.uniform(0.8, 1.2))
    contrast = float(rng.uniform(0.8, 1.2))
    mean = crop.mean()
    return ((crop - mean) * contrast + mean * bright).clamp(0.0, 1.0)


def make_views(
    scenes: Scenes, step: int, args: argparse.Namespace
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """Step ``step``'s global crops, local crops and patch masks (True = masked), a pure
    function of ``(args.seed, step)``."""
    rng = np.random.default_rng([args.seed, step])
    images = [scenes[step * args.batch_size + i] for i in range(args.batch_size)]
    glob = [
        torch.stack([random_crop(im, rng, args.global_scale, args.global_size) for im in images])
        for _ in range(2)
    ]
    local = [
        torch.stack([random_crop(im, rng, args.local_scale, args.local_size) for im in images])
        for _ in range(args.local_crops)
    ]
    grid = args.global_size // args.patch
    masks = []
    for _ in range(2):
        ratio = rng.uniform(*args.mask_ratio, size=(args.batch_size, 1))
        on = rng.random((args.batch_size, 1)) < args.mask_prob  # masked images
        m = (rng.random((args.batch_size, grid * grid)) < ratio) & on
        masks.append(torch.from_numpy(m))
    return glob, local, masks


# ------------------------------------------------------------------------ model


class Head(nn.Module):
    """DINO's projection head: MLP to a bottleneck, L2-normalised, then cosine logits against
    ``prototypes`` unit vectors (DINO's weight-normalised last layer with its norm fixed)."""

    def __init__(self, dim: int, hidden: int, bottleneck: int, prototypes: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, bottleneck),
        )
        self.last = nn.Parameter(torch.randn(prototypes, bottleneck) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.mlp(x), dim=-1) @ F.normalize(self.last, dim=-1).T


class Student(nn.Module):
    """The proxy ViT, its head and iBOT's mask token."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__()
        self.vit = ProxyViT(PROXIES[NAME].create())
        dim = self.vit.model.embed_dim
        self.head = Head(dim, args.hidden, args.bottleneck, args.prototypes)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))

    def encode(
        self, images: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Class token and patch tokens (after the final norm) of (B, 3, H, W) images in
        [0, 1], as :class:`ProxyViT` runs the model; masked patches replaced by the mask token
        before the positional embedding."""
        m = self.vit.model
        x = m.patch_embed.proj((images - self.vit.mean) / self.vit.std)
        b, _, gh, gw = x.shape
        x = x.flatten(2).transpose(1, 2)
        if mask is not None:
            x = torch.where(mask[..., None], self.mask_token.to(x.dtype), x)
        x = torch.cat([m.cls_token.expand(b, -1, -1), x], dim=1) + self.vit.pos_embed((gh, gw))
        x = m.norm_pre(x)
        for block in m.blocks:
            x = block(x)
        x = m.norm(x)
        return x[:, 0], x[:, 1:]


def dino_step(
    student: Student,
    teacher: Student,
    views: tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]],
    centers: dict[str, torch.Tensor],
    args: argparse.Namespace,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The DINO class-token loss plus iBOT's masked-patch loss of one step; updates
    ``centers`` (the teacher's running mean logits) in place."""
    glob, local, masks = views
    with torch.no_grad():
        t_cls, t_patch = [], []
        for x in glob:
            c, p = teacher.encode(x)
            t_cls.append(teacher.head(c))
            t_patch.append(teacher.head(p))
        tc = [F.softmax((c - centers["cls"]) / args.teacher_temp, -1) for c in t_cls]
        tp = [F.softmax((p - centers["patch"]) / args.teacher_temp, -1) for p in t_patch]
    s_cls, s_patch = [], []
    for x, m in zip(glob, masks, strict=True):
        c, p = student.encode(x, m)
        s_cls.append(student.head(c))
        s_patch.append(student.head(p))
    for x in local:
        s_cls.append(student.head(student.encode(x)[0]))
    cls_loss, pairs = 0.0, 0
    for i, t in enumerate(tc):
        for v, s in enumerate(s_cls):
            if v == i:
                continue
            cls_loss = cls_loss + (-t * F.log_softmax(s / args.student_temp, -1)).sum(-1).mean()
            pairs += 1
    cls_loss = cls_loss / pairs
    patch_loss, n = 0.0, 0
    for t, s, m in zip(tp, s_patch, masks, strict=True):
        if m.any():
            ce = (-t * F.log_softmax(s / args.student_temp, -1)).sum(-1)
            patch_loss = patch_loss + (ce * m).sum() / m.sum()
            n += 1
    patch_loss = patch_loss / max(n, 1)
    loss = cls_loss + args.patch_weight * patch_loss
    with torch.no_grad():
        mom = args.center_momentum
        centers["cls"].mul_(mom).add_(torch.cat(t_cls).mean(0, keepdim=True), alpha=1 - mom)
        flat = torch.cat([p.flatten(0, 1) for p in t_patch])
        centers["patch"].mul_(mom).add_(flat.mean(0, keepdim=True), alpha=1 - mom)
    parts = {"cls": float(cls_loss.detach()), "patch": float(torch.as_tensor(patch_loss).detach())}
    return loss, parts


def param_groups(model: nn.Module, wd: float) -> list[dict]:
    """AdamW groups: weight decay on matrices only."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or name.endswith(("pos_embed", "cls_token")) else decay).append(p)
    return [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]


def cosine(step: int, steps: int, start: float, end: float, warm: int = 0) -> float:
    """Linear warm-up from 0 over ``warm`` steps, then cosine from ``start`` to ``end``."""
    if step < warm:
        return start * (step + 1) / warm
    t = (step - warm) / max(1, steps - warm)
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * t))


def train(args: argparse.Namespace) -> tuple[dict[str, torch.Tensor], dict]:
    """Train the proxy; its fp16 timm state dict and the run's record."""
    torch.manual_seed(args.seed)
    world = make_config(seed=args.seed)
    scenes = Scenes(world, args.scenes)
    student = Student(args)
    teacher = Student(args)
    teacher.load_state_dict(student.state_dict())
    teacher.requires_grad_(False)
    opt = torch.optim.AdamW(param_groups(student, args.wd), lr=args.lr)
    centers = {
        "cls": torch.zeros(1, args.prototypes),
        "patch": torch.zeros(1, args.prototypes),
    }
    warm = max(1, int(args.warmup * args.steps))
    history: list[dict] = []
    cpu0, wall0 = time.process_time(), time.time()
    for step in range(args.steps):
        views = make_views(scenes, step, args)
        for g in opt.param_groups:
            g["lr"] = cosine(step, args.steps, args.lr, args.min_lr, warm)
        loss, parts = dino_step(student, teacher, views, centers, args)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), args.clip)
        opt.step()
        with torch.no_grad():
            mom = cosine(step, args.steps, args.ema, 1.0)
            for pt, ps in zip(teacher.parameters(), student.parameters(), strict=True):
                pt.mul_(mom).add_(ps.detach(), alpha=1 - mom)
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            rec = {
                "step": step + 1,
                "loss": round(float(loss), 4),
                **{k: round(v, 4) for k, v in parts.items()},
                "cpu_s": round(time.process_time() - cpu0, 1),
                "wall_s": round(time.time() - wall0, 1),
            }
            history.append(rec)
            print(json.dumps(rec), flush=True)
    # the EMA teacher is DINO's output (its features are the better ones)
    state = {k: v.detach().to(torch.float16) for k, v in teacher.vit.model.state_dict().items()}
    record = {
        "steps": args.steps,
        "cpu_s": round(time.process_time() - cpu0, 1),
        "wall_s": round(time.time() - wall0, 1),
        "final_loss": history[-1]["loss"] if history else None,
        "history": history,
    }
    return state, record


# ------------------------------------------------------------------------ measuring


def measure(weights: Path, n_scenes: int) -> dict:
    """Foreground mIoU (%) on the first ``n_scenes`` validation scenes of the shapes world,
    ``tiny_shapes_vit_plain`` teacher: every registered head that reads a proxy (ProxyCLIP,
    CorrCLIP; a head that reads region masks gets felzenszwalb superpixels) with this proxy,
    and the default head (DenseCLIP's value path) beside them. Scored as :mod:`src.eval`."""
    from scripts.train_tiny_clip import scenes_miou
    from src.teacher.heads import head_spec, registered_heads
    from src.teacher.model import DenseClipTeacher

    world = ShapesConfig()
    samples = [(s.image, s.mask) for s in (render_scene(world, i, "val") for i in range(n_scenes))]
    heads = registered_heads()
    runs = {heads[0]: {"head": heads[0]}}
    for head in heads:
        spec = head_spec(head)
        if not spec.needs_weights:
            continue
        if spec.needs_regions:
            felz = {"masks": "superpixels", "masks_options": {"method": "felzenszwalb"}}
            runs[f"{head}_felzenszwalb"] = {"head": head, **felz}
        else:
            runs[head] = {"head": head}
    out = {}
    for key, kw in runs.items():
        teacher = DenseClipTeacher(
            clip_model="tiny_shapes_vit_plain",
            pretrained="shapes",
            class_names=list(world.class_names),
            proxy=NAME,
            proxy_weights=str(weights),
            **kw,
        )
        out[key] = round(100 * scenes_miou(teacher, world.class_names, samples)[0], 2)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--name", default=NAME, help="file name (without .pt)")
    ap.add_argument("--out", type=Path, default=SHIPPED_DIR)
    ap.add_argument("--log-dir", type=Path, default=ROOT / "logs" / "train_tiny_proxy")
    ap.add_argument("--steps", type=int, default=600, help="0: save the random initialisation")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--scenes", type=int, default=2000, help="train scenes used (the split's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--global-size", type=int, default=96)
    ap.add_argument("--global-scale", type=float, nargs=2, default=(0.3, 1.0))
    ap.add_argument("--local-size", type=int, default=48)
    ap.add_argument("--local-scale", type=float, nargs=2, default=(0.05, 0.3))
    ap.add_argument("--local-crops", type=int, default=4)
    ap.add_argument("--mask-prob", type=float, default=0.5, help="share of masked images")
    ap.add_argument("--mask-ratio", type=float, nargs=2, default=(0.1, 0.5))
    ap.add_argument("--patch-weight", type=float, default=1.0, help="iBOT patch loss weight")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--bottleneck", type=int, default=64)
    ap.add_argument("--prototypes", type=int, default=1024)
    ap.add_argument("--teacher-temp", type=float, default=0.04)
    ap.add_argument("--student-temp", type=float, default=0.1)
    ap.add_argument("--center-momentum", type=float, default=0.9)
    ap.add_argument("--ema", type=float, default=0.99, help="teacher EMA momentum at start (->1)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--min-lr", type=float, default=1e-5)
    ap.add_argument("--warmup", type=float, default=0.1, help="share of steps")
    ap.add_argument("--wd", type=float, default=0.04)
    ap.add_argument("--clip", type=float, default=3.0, help="gradient norm clip")
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--eval-scenes", type=int, default=240, help="0: do not measure")
    ap.add_argument("--eval-only", action="store_true", help="measure <out>/<name>.pt")
    args = ap.parse_args(argv)
    args.patch = dict(PROXIES[NAME].timm_kwargs)["patch_size"]
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    path = args.out / f"{args.name}.pt"
    result: dict = {"name": args.name}
    if not args.eval_only:
        state, record = train(args)
        args.out.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(path, state)
        result.update(record, checkpoint_mb=round(path.stat().st_size / 1e6, 2))
        print(f"wrote {path} ({result['checkpoint_mb']} MB) after {record['cpu_s']} s of CPU")
    if args.eval_scenes:
        result["val_fg_miou"] = measure(path, args.eval_scenes)
        result["eval_scenes"] = args.eval_scenes
    result["args"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    atomic_save_json(args.log_dir / args.name / "metrics.json", result)
    print(json.dumps({k: v for k, v in result.items() if k not in ("args", "history")}, indent=1))
    return result


if __name__ == "__main__":
    main()
