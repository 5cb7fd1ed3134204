#!/usr/bin/env python
"""Make small parity fixtures for the training-free ViT heads from the AUTHORS' OWN code.

The fixture records what the authors' segmentor returns for seeded random CLIP ViT-B/16
weights (made fp16-exact), seeded test images and seeded random text embeddings, so that a
re-implementation can be checked against it without the authors' code, weights or network.

Nothing here imports the project's `src` package. It imports torch, numpy, open_clip (to build
the seeded weights), timm (for the ProxyCLIP proxy) and the checkout given with --repo.
The authors' mmseg / mmengine / mmcv imports are satisfied by tiny fake modules (only the
base classes and the registry decorator their segmentors touch); their dataset code is not used.

How to rerun (one author repository per call; each writes <out>/<head>*.pt):

    # checkouts of the exact commits (any way you like, e.g. git archive of a fetched mirror)
    PY=python; export OMP_NUM_THREADS=1
    $PY make_head_fixtures.py --repo ext/maskclip  --head maskclip  --out fixtures  # chongzhou96/MaskCLIP 245d31f
    $PY make_head_fixtures.py --repo ext/sclip     --head sclip     --out fixtures  # wangf3014/SCLIP     b56bd30
    $PY make_head_fixtures.py --repo ext/naclip    --head naclip    --out fixtures  # sinahmr/NACLIP      0cac3a6
    $PY make_head_fixtures.py --repo ext/clearclip --head clearclip --out fixtures  # mc-lan/ClearCLIP    ad68a40
    $PY make_head_fixtures.py --repo ext/resclip   --head resclip   --out fixtures  # yvhangyang/ResCLIP  0e085f7
    $PY make_head_fixtures.py --repo ext/proxyclip --head proxyclip --out fixtures \
        --dino-repo ext/dino                                                           # mc-lan/ProxyCLIP e7b767f + facebookresearch/dino 7c446df
    $PY make_head_fixtures.py --repo ext/naclip    --head pamr      --out fixtures  # PAMR as NACLIP ships it
    $PY make_head_fixtures.py --repo ext/pearl     --head pearl     --out fixtures  # PGSmall/PEARL       c26062b
    #   (add --check-repo ext/sclip to the pamr call to assert SCLIP's copy gives the same output)
    $PY make_head_fixtures.py --verify-weights 0   # rebuild the weights in this process, print SHA-256

MaskCLIP is an mmseg 0.x / mmcv 1.x codebase: its ViT backbone, BaseDecodeHead, MaskClipHead, PatchEmbed
and resize are imported from the checkout, the mmcv 1.x bricks they use (pure PyTorch in mmcv) are
rewritten in install_maskclip_stubs, its weight converter runs as a script; its ViT has exact GELU.

ClearCLIP and ProxyCLIP cast CLIP (and the proxy) to fp16 themselves, even on a CPU; for them two
fixtures are written: `<head>.pt` exactly as shipped (fp16 arithmetic) and `<head>_fp32.pt` with the
same code run in fp32 (their `.half()` calls made no-ops, models `.float()`), which is the one a
fp32 re-implementation should match to 1e-4.  SCLIP / NACLIP / ResCLIP run in fp32 on a CPU by their
own loader (`clip.load(..., device='cpu')` calls `model.float()` after the fp16 cast).

Weight recipe (RECIPE below; `seeded_fill`, `rebuild_weights(seed)`), replicable without this file:
only the key names and shapes of open_clip.create_model('ViT-B-16', force_quick_gelu=True) are used;
every floating tensor is overwritten, in sorted name order, from ONE torch.Generator().manual_seed(seed + 1)
by integers (torch.randint) times a power of two, so the weights are fp16-exact and bit-identical on every
CPU (no randn / trunc_normal: their log / cos / erfinv differ in the last bits between vector ISAs):
    bias (name ends '.bias'):                 randint(-64, 65) * 2**-11
    LN gain (parent name starts 'ln_'):       1 + randint(-64, 65) * 2**-9
    0-d (logit_scale):                        4.609375
    else: k = isqrt(2**28 // fan);            randint(-k, k + 1) * 2**-14
          fan = prod(shape[1:]) (4-d), shape[0] ('proj', 'text_projection'), else shape[-1]
Proxy (ProxyCLIP) recipe: the same on timm.create_model('vit_base_patch8_224.dino', pretrained=False,
num_classes=0), seed `proxy_seed`, LN gains = names whose second-to-last part starts with 'norm'
(DINO/timm layout is identical: cls_token, pos_embed, patch_embed.proj.*, blocks.N.{norm1,attn.qkv,
attn.proj,norm2,mlp.fc1,mlp.fc2}.*, norm.*).
Text: make_text() (integers, normalised in float64, fp16-rounded; stored in the fixture).
PAMR inputs: make_pamr_inputs() (integers; stored in the fixture).
SHA-256: over sorted names: name utf-8, str(dtype), str(tuple(shape)), then the float32 bytes
(C-contiguous, little endian).
"""

import argparse
import contextlib
import hashlib
import importlib
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import types

import numpy as np
import torch
import torch.nn as nn

FORMAT = "denseclip-head-fixture/1"
RECIPE = "dcl-heads-v2-int"
CLIP_MEAN_255 = (122.771, 116.746, 104.094)  # the authors' SegDataPreProcessor mean (RGB)
CLIP_STD_255 = (68.501, 66.632, 70.323)
WEIGHT_SEED = 0
PROXY_SEED = 1
TEXT_SEED = 2
NUM_QUERIES = 5
# 4 classes, class 0 has two names -> tests "max over names of a class"
NAME_LINES = [["background", "sky"], ["cat"], ["dog"], ["tree"]]


# ----------------------------------------------------------------------------------------------
# Seeded inputs (replicable by the project's tests without the authors' code)
#
# Every seeded tensor is drawn as INTEGERS from a seeded torch.Generator (torch.randint, a serial
# Mersenne-Twister kernel) and scaled by a power of two, so that it is fp16-exact and bit-identical
# on every CPU: no transcendental function (randn's log/cos, trunc_normal's erfinv) is involved, and
# nothing of open_clip's / timm's own init survives (only the key names and shapes are used).
# ----------------------------------------------------------------------------------------------
def seeded_fill(sd, seed, gain_prefix):
    """Overwrite every floating tensor of ``sd`` (in sorted name order, one generator):

    * biases (every name ending in ``.bias``):            n * 2**-11,  n in [-64, 64]
    * LayerNorm gains (``weight`` whose parent starts with ``gain_prefix``): 1 + n * 2**-9, n in [-64, 64]
    * 0-d tensors (CLIP's ``logit_scale``):               4.609375 (about ln 100), nothing drawn
    * everything else (weights, embeddings, class / cls tokens, positional embeddings, projections):
      n * 2**-14 with n in [-k, k], k = isqrt(2**28 // fan), i.e. U(-1/sqrt(fan), 1/sqrt(fan)) as
      torch's nn.Linear default; fan = prod(shape[1:]) for 4-d (conv) weights, shape[0] for the
      ``x @ W`` matrices ``proj`` / ``text_projection``, else shape[-1].
    """
    g = torch.Generator().manual_seed(seed + 1)
    for name in sorted(sd):
        t = sd[name]
        if not t.is_floating_point():
            continue
        parts = name.split(".")
        if t.dim() == 0:
            t.fill_(4.609375)
            continue
        if name.endswith(".bias"):
            n = torch.randint(-64, 65, t.shape, generator=g, dtype=torch.int64)
            v = n.to(torch.float32) * 2.0**-11
        elif name.endswith("weight") and len(parts) >= 2 and parts[-2].startswith(gain_prefix):
            n = torch.randint(-64, 65, t.shape, generator=g, dtype=torch.int64)
            v = 1.0 + n.to(torch.float32) * 2.0**-9
        else:
            if t.dim() == 4:
                fan = int(np.prod(t.shape[1:]))
            elif parts[-1] in ("proj", "text_projection") and t.dim() == 2:
                fan = t.shape[0]
            else:
                fan = t.shape[-1]
            k = math.isqrt(2**28 // fan)
            n = torch.randint(-k, k + 1, t.shape, generator=g, dtype=torch.int64)
            v = n.to(torch.float32) * 2.0**-14
        assert torch.equal(v.half().float(), v), name  # fp16-exact by construction
        t.copy_(v.to(t.dtype))
    return sd


def rebuild_weights(seed=WEIGHT_SEED):
    """Seeded, fp16-exact CLIP ViT-B/16 (QuickGELU) state dict in OpenAI's layout (= open_clip's)."""
    import open_clip

    model = open_clip.create_model("ViT-B-16", force_quick_gelu=True)  # only names and shapes used
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return seeded_fill(sd, seed, "ln_")


def rebuild_proxy_weights(seed=PROXY_SEED, arch="vit_base_patch8_224.dino"):
    """Seeded, fp16-exact DINO ViT (timm architecture); the key layout is DINO's own."""
    import timm

    model = timm.create_model(arch, pretrained=False, num_classes=0)  # only names and shapes used
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return seeded_fill(sd, seed, "norm")


def state_dict_sha256(sd):
    h = hashlib.sha256()
    for name in sorted(sd):
        t = sd[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(
            t.float().numpy().astype("<f4").tobytes()
            if t.is_floating_point()
            else t.numpy().tobytes()
        )
    return h.hexdigest()


def make_image(seed, H, W):
    """Integer-only recipe (bit-exact everywhere): 20-px blocks of random colour + integer noise."""
    g = torch.Generator().manual_seed(seed)
    b = 20
    low = torch.randint(0, 256, (3, H // b + 1, W // b + 1), generator=g, dtype=torch.int64)
    img = low.repeat_interleave(b, 1).repeat_interleave(b, 2)[:, :H, :W]
    noise = torch.randint(-12, 13, (3, H, W), generator=g, dtype=torch.int64)
    return (img + noise).clamp(0, 255).to(torch.uint8)  # (3, H, W) RGB


def normalise(img_u8):
    """What the authors' SegDataPreProcessor hands the segmentor: (x - mean) / std, RGB, fp32."""
    mean = torch.tensor(CLIP_MEAN_255).view(3, 1, 1)
    std = torch.tensor(CLIP_STD_255).view(3, 1, 1)
    return ((img_u8.float() - mean) / std).unsqueeze(0)


def make_text(seed=TEXT_SEED, n=NUM_QUERIES, dim=512):
    """Unit vectors from integers, rounded to fp16 (so fp16 heads see the same values).

    n in [-1024, 1024] from Generator(seed); each row divided by the square root of its exact
    integer sum of squares in float64 (sqrt and division are correctly rounded everywhere),
    then fp16-rounded. The fixture stores the result (``text.embeddings``); tests use that.
    """
    g = torch.Generator().manual_seed(seed)
    q = torch.randint(-1024, 1025, (n, dim), generator=g, dtype=torch.int64)
    norms = torch.tensor([math.sqrt(sum(int(v) ** 2 for v in row)) for row in q.tolist()],
                         dtype=torch.float64)  # fmt: skip
    t = q.to(torch.float64) / norms[:, None]
    return t.float().half().float()


def make_pamr_inputs(seed=20):
    """PAMR's image and two masks from integers (power-of-two scaled, fp16-exact)."""
    g = torch.Generator().manual_seed(seed)
    img = torch.randint(-512, 513, (1, 3, 60, 90), generator=g).float() * 2.0**-8
    low = torch.randint(-400, 401, (1, 5, 30, 45), generator=g).float() * 2.0**-12
    full = torch.randint(-400, 401, (1, 5, 60, 90), generator=g).float() * 2.0**-12
    return img, low, full


def sha_u8(t):
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()


# ----------------------------------------------------------------------------------------------
# Fakes for the authors' mm* imports
# ----------------------------------------------------------------------------------------------
def install_mm_stubs():
    def mod(name):
        m = types.ModuleType(name)
        sys.modules[name] = m
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, m)
        return m

    class _Registry:
        def register_module(self, *args, **kwargs):
            if args and isinstance(args[0], type):
                return args[0]
            return lambda cls: cls

    class BaseSegmentor(nn.Module):
        def __init__(self, data_preprocessor=None, init_cfg=None):
            super().__init__()
            self.fake_data_preprocessor = data_preprocessor

    class SegDataPreProcessor:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

    class PixelData:
        def __init__(self, **kwargs):
            self.__dict__.update(kwargs)

    for name in [
        "mmseg",
        "mmseg.models",
        "mmseg.models.segmentors",
        "mmseg.models.data_preprocessor",
        "mmseg.registry",
        "mmseg.datasets",
        "mmengine",
        "mmengine.structures",
        "mmengine.fileio",
        "mmcv",
    ]:
        mod(name)
    sys.modules["mmseg.models.segmentors"].BaseSegmentor = BaseSegmentor
    sys.modules["mmseg.models.data_preprocessor"].SegDataPreProcessor = SegDataPreProcessor
    sys.modules["mmseg.registry"].MODELS = _Registry()
    sys.modules["mmseg.registry"].DATASETS = _Registry()
    sys.modules["mmengine.structures"].PixelData = PixelData
    if (
        importlib.util.find_spec("pkg_resources") is None
    ):  # their clip/clip.py: from pkg_resources import packaging
        import packaging.version

        mod("pkg_resources").packaging = packaging


def stub_module(name, **attrs):
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m


class FakeSample:
    def __init__(self, ori_shape, img_shape):
        self.metainfo = dict(
            ori_shape=tuple(ori_shape),
            img_shape=tuple(img_shape),
            pad_shape=tuple(img_shape),
            padding_size=[0, 0, 0, 0],
            img_path="fixture.png",
        )
        self.data = {}

    def set_data(self, d):
        self.data.update(d)


def purge_modules(*prefixes):
    for k in list(sys.modules):
        if any(k == p or k.startswith(p + ".") for p in prefixes):
            del sys.modules[k]


def import_from_repo(repo, modname):
    repo = os.path.abspath(repo)
    if repo not in sys.path:
        sys.path.insert(0, repo)
    return importlib.import_module(modname)


@contextlib.contextmanager
def record_interpolate():
    """Record every F.interpolate call (input, kwargs) made while the block runs."""
    calls = []
    orig = torch.nn.functional.interpolate

    def wrapped(input, *args, **kwargs):
        out = orig(input, *args, **kwargs)
        calls.append((input.detach().clone(), args, dict(kwargs), tuple(out.shape)))
        return out

    torch.nn.functional.interpolate = wrapped
    try:
        yield calls
    finally:
        torch.nn.functional.interpolate = orig


@contextlib.contextmanager
def half_is_noop(enabled=True):
    """For the fp32 variants of ClearCLIP / ProxyCLIP: make their `.half()` casts identity."""
    if not enabled:
        yield
        return
    orig_t, orig_m = torch.Tensor.half, nn.Module.half
    torch.Tensor.half = lambda self, *a, **k: self
    nn.Module.half = lambda self: self
    try:
        yield
    finally:
        torch.Tensor.half, nn.Module.half = orig_t, orig_m


def feat_from_calls(calls, n_queries):
    """The patch-grid cosine logits = input of the head's last bilinear upsampling of logits."""

    def mode(call):  # a keyword, or the 4th positional argument (mmseg 0.x's resize)
        return call[2].get("mode", call[1][2] if len(call[1]) > 2 else None)

    cands = [
        c for c in calls if mode(c) == "bilinear" and c[0].dim() == 4 and c[0].shape[1] == n_queries
    ]
    return cands[-1][0][0].float(), cands[0][0][
        0
    ].float()  # (final, first); ResCLIP's first = pass 1


def sub(t, step, off):
    """Deterministic pixel subset of an image-resolution map: rows/cols off::step."""
    return t[..., off::step, off::step].contiguous()


def git_commit(repo):
    p = os.path.join(repo, ".COMMIT")
    if os.path.exists(p):
        return open(p).read().strip()
    try:
        return subprocess.check_output(["git", "-C", repo, "rev-parse", "HEAD"], text=True).strip()
    except Exception:
        return "unknown"


def env_info():
    import open_clip

    d = dict(
        python=platform.python_version(),
        torch=str(torch.__version__),
        open_clip=str(open_clip.__version__),
        numpy=str(np.__version__),
        machine=platform.machine(),
    )
    try:
        import timm

        d["timm"] = str(timm.__version__)
    except Exception:
        pass
    return d


def write_names(path, sep):
    with open(path, "w") as f:
        f.write("\n".join(sep.join(names) for names in NAME_LINES))
    idx = [i for i, names in enumerate(NAME_LINES) for _ in names]
    return [n for names in NAME_LINES for n in names], idx


# ----------------------------------------------------------------------------------------------
# Cases
# ----------------------------------------------------------------------------------------------
IMG_SEEDS = {
    (224, 224): 10,
    (224, 336): 11,
    (112, 448): 12,
    (448, 448): 13,
    (448, 560): 14,
    (336, 336): 15,
    (336, 448): 16,
    (280, 392): 17,
    (300, 400): 18,
}


def image_entry(H, W):
    seed = IMG_SEEDS[(H, W)]
    u8 = make_image(seed, H, W)
    return u8, dict(seed=seed, H=H, W=W, sha256_uint8=sha_u8(u8))


def run_forward_feature(seg, H, W, n_queries, step=7, off=3, dtype=None):
    u8, meta = image_entry(H, W)
    x = normalise(u8)
    if dtype is not None:
        x = x.to(dtype)
    with torch.no_grad(), record_interpolate() as calls:
        out = seg.forward_feature(x)
    feat, first = feat_from_calls(calls, n_queries)
    d = dict(
        kind="forward_feature",
        image=meta,
        feat_logits=feat,
        img_logits_sub=sub(out[0].float(), step, off),
        sub_step=step,
        sub_offset=off,
        img_logits_shape=list(out.shape),
        out_dtype=str(out.dtype),
    )
    if first.shape != feat.shape or not torch.equal(first, feat):
        d["pass1_feat_logits"] = first  # ResCLIP: grid logits of the first (RCS-only) pass
    return d


def run_predict(seg, H, W, ori, step=6, off=2):
    u8, meta = image_entry(H, W)
    x = normalise(u8)
    s = FakeSample(ori, (H, W))
    with torch.no_grad():
        seg.predict(x, [s])
    probs = s.data["seg_logits"].data
    pred = s.data["pred_sem_seg"].data
    return dict(
        kind="predict",
        image=meta,
        ori_shape=list(ori),
        seg_probs_sub=sub(probs.float(), step, off),
        sub_step=step,
        sub_offset=off,
        seg_probs_shape=list(probs.shape),
        out_dtype=str(probs.dtype),
        pred_sub=sub(pred.to(torch.uint8), step, off),
        pred_shape=list(pred.shape),
    )


# ----------------------------------------------------------------------------------------------
# Heads
# ----------------------------------------------------------------------------------------------
def save_weights_openai(tmpdir):
    sd = rebuild_weights(WEIGHT_SEED)
    sha = state_dict_sha256(sd)
    path = os.path.join(tmpdir, "vit_b16_seeded.pt")
    torch.save(sd, path)
    return path, sha


def one_template(module):
    module.openai_imagenet_template = [lambda c: f"a photo of a {c}."]


def head_sclip(repo, tmpdir):
    install_mm_stubs()
    wpath, sha = save_weights_openai(tmpdir)
    names_path = os.path.join(tmpdir, "names.txt")
    names, idx = write_names(names_path, ", ")
    m = import_from_repo(repo, "clip_segmentor")
    one_template(m)
    text = make_text()
    cases = {}

    def build(**kw):
        seg = m.CLIPForSegmentation(clip_path=wpath, name_path=names_path, device="cpu", **kw)
        seg.query_features = text.clone()
        return seg

    seg = build()
    for H, W in [(224, 224), (224, 336), (112, 448)]:
        cases[f"ff_{H}x{W}"] = run_forward_feature(seg, H, W, len(names))
    cases["predict_slide_default"] = dict(
        run_predict(seg, 224, 336, (250, 375)),
        settings=dict(
            logit_scale=40, prob_thd=0.0, area_thd=None, slide_crop=224, slide_stride=112
        ),
    )
    seg = build(logit_scale=65, prob_thd=0.1, area_thd=0.1)
    cases["predict_slide_voc21"] = dict(
        run_predict(seg, 224, 336, (250, 375)),
        settings=dict(logit_scale=65, prob_thd=0.1, area_thd=0.1, slide_crop=224, slide_stride=112),
    )
    settings = dict(
        head_call="net.encode_image(img, return_all=True, csa=True)",
        pamr_steps=0,
        default_logit_scale=40,
        slide_crop=224,
        slide_stride=112,
        name_split=", ",
        precision="fp32 (clip.load on CPU: fp16 cast then model.float())",
    )
    return dict(
        variants={"sclip": dict(cases=cases, settings=settings)},
        sha=sha,
        names=names,
        idx=idx,
        text=text,
    )


def head_naclip(repo, tmpdir):
    install_mm_stubs()
    wpath, sha = save_weights_openai(tmpdir)
    names_path = os.path.join(tmpdir, "names.txt")
    names, idx = write_names(names_path, ", ")
    m = import_from_repo(repo, "naclip")
    one_template(m)
    text = make_text()
    cases = {}

    def build(**kw):
        seg = m.NACLIP(
            clip_path=wpath,
            name_path=names_path,
            device="cpu",
            arch="reduced",
            attn_strategy="naclip",
            gaussian_std=5.0,
            **kw,
        )
        seg.query_features = text.clone()
        return seg

    seg = build(pamr_steps=10)
    for H, W in [(224, 224), (224, 336), (112, 448)]:
        cases[f"ff_{H}x{W}"] = run_forward_feature(seg, H, W, len(names))
    cases["predict_slide_pamr"] = dict(
        run_predict(seg, 224, 336, (250, 375)),
        settings=dict(
            logit_scale=40,
            prob_thd=0.0,
            slide_crop=224,
            slide_stride=112,
            pamr_steps=10,
            pamr_stride=[8, 16],
        ),
    )
    seg = build(pamr_steps=10, prob_thd=0.1, slide_crop=0)
    cases["predict_whole_pamr_voc21"] = dict(
        run_predict(seg, 224, 336, (250, 375)),
        settings=dict(
            logit_scale=40, prob_thd=0.1, slide_crop=0, pamr_steps=10, pamr_stride=[8, 16]
        ),
    )
    seg = build(pamr_steps=0)
    cases["predict_slide_nopamr"] = dict(
        run_predict(seg, 224, 336, (250, 375)),
        settings=dict(logit_scale=40, prob_thd=0.0, slide_crop=224, slide_stride=112, pamr_steps=0),
    )
    settings = dict(
        arch="reduced",
        attn_strategy="naclip",
        gaussian_std=5.0,
        name_split=", ",
        precision="fp32 (clip.load on CPU)",
    )
    return dict(
        variants={"naclip": dict(cases=cases, settings=settings)},
        sha=sha,
        names=names,
        idx=idx,
        text=text,
    )


def head_pearl(repo, tmpdir):
    """PEARL (``pearl_ovss.PEARL``: ``reduced`` block + Procrustes attention, TLP on/off)."""
    install_mm_stubs()
    wpath, sha = save_weights_openai(tmpdir)
    names_path = os.path.join(tmpdir, "names.txt")
    names, idx = write_names(names_path, ", ")
    purge_modules("clip", "pearl", "prompts")
    m = import_from_repo(repo, "pearl_ovss")
    one_template(m)
    prop = import_from_repo(repo, "pearl.prop")
    text = make_text()
    cases = {}

    def build(**kw):
        seg = m.PEARL(
            clip_path=wpath,
            name_path=names_path,
            device="cpu",
            arch="reduced",
            attn_strategy="pearl",
            **kw,
        )
        seg.query_features = text.clone()
        if seg.prop is not None:  # their __init__ binds TLP to the query features: ours
            seg.prop.bind_text(seg.query_features)
        return seg

    seg = build(use_prop="on")
    for H, W in [(224, 224), (224, 336), (112, 448)]:
        cases[f"ff_{H}x{W}"] = run_forward_feature(seg, H, W, len(names))
    cases["predict_slide_tlp"] = dict(
        run_predict(seg, 224, 336, (250, 375)),
        settings=dict(logit_scale=40, prob_thd=0.0, slide_crop=224, slide_stride=112,
                      use_prop="on", grid=80, alpha_kk=0.08),
    )  # fmt: skip
    seg = build(use_prop="on", prob_thd=0.1, slide_crop=0)
    cases["predict_whole_tlp_voc21"] = dict(
        run_predict(seg, 224, 336, (250, 375)),
        settings=dict(logit_scale=40, prob_thd=0.1, slide_crop=0, use_prop="on", grid=80,
                      alpha_kk=0.08),
    )  # fmt: skip
    seg = build(use_prop="off")
    cases["predict_slide_notlp"] = dict(
        run_predict(seg, 224, 336, (250, 375)),
        settings=dict(logit_scale=40, prob_thd=0.0, slide_crop=224, slide_stride=112,
                      use_prop="off", alpha_kk=0.08),
    )  # fmt: skip
    seg = build(use_prop="on", alpha_kk=0.3, grid=224)  # cfg_city_scapes.py's settings
    cases["ff_224x336_alpha03"] = run_forward_feature(seg, 224, 336, len(names))
    cases["predict_slide_tlp_city"] = dict(
        run_predict(seg, 224, 336, (250, 375)),
        settings=dict(logit_scale=40, prob_thd=0.0, slide_crop=224, slide_stride=112,
                      use_prop="on", grid=224, alpha_kk=0.3),
    )  # fmt: skip
    # TLP alone on seeded integer inputs (image, 5 name scores at 48 x 72; grid 16 pools by
    # round(3.0) x round(4.5) = 3 x 4, grid 80 not at all)
    g = torch.Generator().manual_seed(21)
    img = torch.randint(-512, 513, (1, 3, 48, 72), generator=g).float() * 2.0**-8
    logits = torch.randint(-400, 401, (1, 5, 48, 72), generator=g).float() * 2.0**-12
    for grid in (80, 16):
        tlp = prop.TLP(grid=grid)
        tlp.bind_text(text)
        with torch.no_grad():
            out = tlp(img, logits)
        cases[f"tlp_grid{grid}"] = dict(
            kind="tlp", gen_seed=21, grid=grid, image=img[0], logits=logits[0], out=out[0]
        )
    settings = dict(
        arch="reduced",
        attn_strategy="pearl",
        use_kk=True,
        alpha_kk=0.08,
        align_solver="polar",
        polar_iters=5,
        tlp="TLP(grid) bound to the fixture text (seg.prop.bind_text), cg 25 steps",
        name_split=", ",
        precision="fp32 (clip.load on CPU)",
        tlp_inputs="tlp_grid*: Generator().manual_seed(21): image randint(-512, 513, "
        "(1,3,48,72)) * 2**-8, then logits randint(-400, 401, (1,5,48,72)) * 2**-12; stored",
    )
    return dict(
        variants={"pearl": dict(cases=cases, settings=settings)},
        sha=sha,
        names=names,
        idx=idx,
        text=text,
    )


def _load_vendored_open_clip(repo, wpath):
    """Their vendored open_clip, with the 'openai' download pointed at our seeded file."""
    purge_modules("open_clip")
    oc = import_from_repo(repo, "open_clip")
    oc_openai = importlib.import_module("open_clip.openai")
    assert os.path.abspath(oc.__file__).startswith(os.path.abspath(repo)), oc.__file__
    oc_openai.get_pretrained_url = lambda name, tag: "seeded://vit_b16"
    oc_openai.download_pretrained_from_url = lambda url, cache_dir=None: wpath
    return oc


def head_clearclip(repo, tmpdir):
    install_mm_stubs()
    wpath, sha = save_weights_openai(tmpdir)
    names_path = os.path.join(tmpdir, "names.txt")
    names, idx = write_names(names_path, ",")
    _load_vendored_open_clip(repo, wpath)
    stub_module("BLIP")
    stub_module("BLIP.models")
    stub_module("BLIP.models.blip_retrieval", blip_retrieval=None)
    stub_module("gem", create_gem_model=None)
    m = import_from_repo(repo, "clearclip_segmentor")
    one_template(m)
    text = make_text()
    variants = {}
    for precision in ["fp16", "fp32"]:
        fp32 = precision == "fp32"
        cases = {}

        def build(fp32=fp32, **kw):
            seg = m.ClearCLIPSegmentation(
                clip_type="CLIP",
                vit_type="ViT-B/16",
                model_type="ClearCLIP",
                name_path=names_path,
                device="cpu",
                ignore_residual=True,
                **kw,
            )
            if fp32:
                seg.net.float()
                seg.query_features = text.clone()
            else:
                seg.query_features = text.clone().half()
            return seg

        seg = build()
        dt = None if fp32 else torch.float16
        with half_is_noop(fp32):
            for H, W in [(224, 224), (224, 336), (448, 448)]:
                cases[f"ff_{H}x{W}"] = run_forward_feature(seg, H, W, len(names), dtype=dt)
            cases["predict_slide_default"] = dict(
                run_predict(seg, 448, 560, (500, 625)),
                settings=dict(logit_scale=50, prob_thd=0.0, slide_crop=448, slide_stride=224),
            )
            # the repo's own configs/base_config.py sets model_type='vanilla' (q-k attention, still no
            # residual / FFN); record that too
            seg.model_type = "vanilla"
            cases["ff_224x336_vanilla_config"] = run_forward_feature(
                seg, 224, 336, len(names), dtype=dt
            )
            seg.model_type = "ClearCLIP"
        variants["clearclip" if not fp32 else "clearclip_fp32"] = dict(
            cases=cases,
            settings=dict(
                clip_type="CLIP",
                vit_type="ViT-B/16",
                model_type="ClearCLIP",
                ignore_residual=True,
                name_split=",",
                precision=(
                    'fp16 as shipped: create_model(..., precision="fp16"), inputs.half()'
                    if not fp32
                    else "fp32: same code with net.float() and .half() made a no-op"
                ),
                note="'ff_224x336_vanilla_config' uses model_type='vanilla' as in configs/base_config.py:6",
            ),
        )
    return dict(variants=variants, sha=sha, names=names, idx=idx, text=text)


def head_resclip(repo, tmpdir):
    install_mm_stubs()
    wpath, sha = save_weights_openai(tmpdir)
    names_path = os.path.join(tmpdir, "names.txt")
    names, idx = write_names(names_path, ", ")
    # CPU shims for their hard-coded .cuda() / PAMR(...).to(torch.device('cuda'))
    torch.Tensor.cuda = lambda self, *a, **k: self
    cm = import_from_repo(repo, "clip.model")
    OrigPAMR = cm.PAMR

    class CpuPAMR(OrigPAMR):
        def to(self, *a, **k):
            return self

    cm.PAMR = CpuPAMR
    m = import_from_repo(repo, "resclip_segmentor")
    one_template(m)
    text = make_text()
    patch_labels = []
    orig_cpm = cm.VisionTransformer.create_patch_matrix

    def rec_cpm(self, *a, **k):
        out = orig_cpm(self, *a, **k)
        patch_labels.append(out.detach().clone().to(torch.uint8))
        return out

    cm.VisionTransformer.create_patch_matrix = rec_cpm

    cfg_voc21 = dict(
        prob_thd=0.1,
        slide_crop=0,
        temp_thd=0.5,
        delete_same_entity=True,
        attn_rcs_weights=[2.0, 0.3],
        attn_sfr_weights=[2.2, 0.7],
    )
    cfg_ctx59 = dict(
        temp_thd=0.25,
        delete_same_entity=True,
        attn_rcs_weights=[2.0, 0.4],
        attn_sfr_weights=[1.8, 0.7],
    )

    def build(cfg):
        seg = m.ResCLIPSegmentation(
            clip_path=wpath,
            name_path=names_path,
            device="cpu",
            arch="wo_resi",
            attn_strategy="resclip",
            gaussian_std=5.0,
            **cfg,
        )
        seg.query_features = text.clone()
        return seg

    cases = {}
    seg = build(cfg_voc21)
    for H, W in [(224, 224), (224, 336)]:
        patch_labels.clear()
        c = run_forward_feature(seg, H, W, len(names))
        c["sfr_patch_labels"] = patch_labels[0]
        c["settings"] = dict(cfg_voc21)
        cases[f"ff_{H}x{W}_voc21"] = c
    patch_labels.clear()
    cases["predict_whole_voc21"] = dict(
        run_predict(seg, 224, 336, (250, 375)),
        settings=dict(cfg_voc21),
        sfr_patch_labels=patch_labels[0],
    )
    # not a shipped setting: temp_thd 0 keeps every patch's argmax, so the SFR mask has many labels
    cfg_thd0 = dict(cfg_voc21, temp_thd=0.0)
    seg = build(cfg_thd0)
    patch_labels.clear()
    c = run_forward_feature(seg, 224, 336, len(names))
    c["sfr_patch_labels"] = patch_labels[0]
    c["settings"] = dict(cfg_thd0)
    cases["ff_224x336_thd0"] = c
    seg = build(cfg_ctx59)
    patch_labels.clear()
    c = run_predict(seg, 224, 336, (250, 375))
    c["settings"] = dict(cfg_ctx59, slide_crop=224, slide_stride=112, prob_thd=0.0)
    c["sfr_patch_labels_per_window"] = [p for p in patch_labels]
    cases["predict_slide_context59"] = c
    settings = dict(
        arch="wo_resi",
        attn_strategy="resclip",
        gaussian_std=5.0,
        logit_scale=40,
        pamr_steps=0,
        name_split=", ",
        precision="fp32 (clip.load on CPU); attn_sfr cast to fp16 by their code",
        cpu_shims="Tensor.cuda -> identity; PAMR.to -> identity (their code hard-codes cuda)",
    )
    return dict(
        variants={"resclip": dict(cases=cases, settings=settings)},
        sha=sha,
        names=names,
        idx=idx,
        text=text,
    )


def head_proxyclip(repo, tmpdir, dino_repo):
    install_mm_stubs()
    wpath, sha = save_weights_openai(tmpdir)
    psd = rebuild_proxy_weights(PROXY_SEED)
    psha = state_dict_sha256(psd)
    names_path = os.path.join(tmpdir, "names.txt")
    names, idx = write_names(names_path, "; ")
    torch.hub.load = _dino_hub_loader(dino_repo, psd)
    _load_vendored_open_clip(repo, wpath)
    stub_module("segment_anything", sam_model_registry={})
    stub_module("mae")
    stub_module("mae.models_vit")
    stub_module("mae.pos_embed", interpolate_pos_embed=None)
    sys.modules["mae"].models_vit = sys.modules["mae.models_vit"]
    stub_module("einops", rearrange=None)  # only used by their MAE branch
    if (
        importlib.util.find_spec("openpyxl") is None
    ):  # myutils.py imports it for its Excel logging only
        stub_module("openpyxl")
    m = import_from_repo(repo, "proxyclip_segmentor")
    one_template(m)
    text = make_text()
    variants = {}
    for precision in ["fp16", "fp32"]:
        fp32 = precision == "fp32"
        with half_is_noop(fp32):
            seg = m.ProxyCLIPSegmentation(
                clip_type="openai",
                model_type="ViT-B/16",
                vfm_model="dino",
                name_path=names_path,
                device="cpu",
            )
            if fp32:
                seg.clip.float()
                seg.vfm.float()
                seg.query_features = text.clone()
            else:
                seg.query_features = text.clone().half()
            cases = {}
            for H, W in [(224, 224), (336, 336)]:
                cases[f"ff_{H}x{W}"] = run_forward_feature(seg, H, W, len(names), dtype=None)
            cases["predict_slide_default"] = dict(
                run_predict(seg, 336, 448, (360, 480)),
                settings=dict(logit_scale=40, prob_thd=0.0, slide_crop=336, slide_stride=112),
            )
        variants["proxyclip" if not fp32 else "proxyclip_fp32"] = dict(
            cases=cases,
            settings=dict(
                clip_type="openai",
                model_type="ViT-B/16",
                vfm_model="dino (dino_vitb8)",
                beta=1.2,
                gamma=3.0,
                name_split="; ",
                proxy_seed=PROXY_SEED,
                proxy_sha256=psha,
                proxy_recipe="rebuild_proxy_weights(seed): timm 'vit_base_patch8_224.dino', num_classes=0, "
                "seeded_fill(sd, seed, 'norm') (integers, fp16-exact); loaded strictly into facebookresearch/dino vision_transformer.vit_base(patch_size=8)",
                precision=(
                    'fp16 as shipped (CLIP precision="fp16", vfm.half(), imgs .half())'
                    if not fp32
                    else "fp32: same code with .half() made a no-op, clip.float(), vfm.float()"
                ),
            ),
        )
    return dict(variants=variants, sha=sha, names=names, idx=idx, text=text)


# ----------------------------------------------------------------------------------------------
# MaskCLIP (chongzhou96/MaskCLIP, an mmseg 0.x codebase): its ViT backbone and MaskClipHead are
# imported from the checkout; the mmcv 1.x pieces they build on are the small pure-PyTorch
# ones below (no compiled mmcv op is used by this path).
# ----------------------------------------------------------------------------------------------
def install_maskclip_stubs(repo):
    """Fake mmcv 1.x / mmseg 0.x modules for MaskCLIP's ``mmseg/models/backbones/vit.py`` and
    ``mmseg/models/decode_heads/{decode_head,maskclip_head}.py`` (imported from ``repo``).

    The fakes rewrite mmcv 1.x's pure-PyTorch bricks as mmcv 1.x defines them:
    ``build_norm_layer`` (``'ln' + postfix``, ``nn.LayerNorm(eps)``), ``build_conv_layer``
    (``nn.Conv2d``), ``MultiheadAttention`` (``nn.MultiheadAttention`` as ``.attn``, batch-first
    by transposes, ``identity + out``), ``FFN`` (``Sequential(Sequential(Linear, act, Dropout),
    Linear, Dropout)``, ``identity + out``), ``BaseModule`` / ``ModuleList`` (nn.Module with
    ``init_cfg``), the fp16 decorators (identity), registries. mmseg's own ``ops`` (``resize``),
    ``models/utils/embed.py`` (``PatchEmbed``) and the two head files are the checkout's."""
    import logging

    repo = os.path.abspath(repo)
    purge_modules("mmseg", "mmcv", "mmengine")

    def mod(name, path=None, **attrs):
        m = types.ModuleType(name)
        if path is not None:
            m.__path__ = [os.path.join(repo, path)]
        m.__dict__.update(attrs)
        sys.modules[name] = m
        parent, _, child = name.rpartition(".")
        if parent and parent in sys.modules:
            setattr(sys.modules[parent], child, m)
        return m

    class Registry:
        def __init__(self, *a, **k):
            pass

        def register_module(self, *args, **kwargs):
            if args and isinstance(args[0], type):
                return args[0]
            return lambda cls: cls

    class BaseModule(nn.Module):
        def __init__(self, init_cfg=None):
            super().__init__()
            self.init_cfg = init_cfg

        def init_weights(self):
            pass

    class ModuleList(nn.ModuleList):
        def __init__(self, modules=None, init_cfg=None):
            super().__init__(modules)

    def build_norm_layer(cfg, num_features, postfix=""):
        assert cfg["type"] == "LN", cfg
        return f"ln{postfix}", nn.LayerNorm(num_features, eps=cfg.get("eps", 1e-5))

    def build_conv_layer(cfg, *args, **kwargs):
        assert cfg is None or cfg.get("type", "Conv2d") == "Conv2d", cfg
        return nn.Conv2d(*args, **kwargs)

    def build_dropout(cfg):
        p = cfg.get("drop_prob", 0.0) if cfg else 0.0
        assert p == 0.0, "MaskCLIP's configs set drop_path_rate 0"
        return nn.Identity()

    class MultiheadAttention(BaseModule):
        def __init__(self, embed_dims, num_heads, attn_drop=0.0, proj_drop=0.0,
                     dropout_layer=None, init_cfg=None, batch_first=False, bias=True):  # fmt: skip
            super().__init__(init_cfg)
            self.batch_first = batch_first
            self.attn = nn.MultiheadAttention(embed_dims, num_heads, dropout=attn_drop, bias=bias)
            self.proj_drop = nn.Dropout(proj_drop)
            self.dropout_layer = build_dropout(dropout_layer)

        def forward(self, query, key=None, value=None, identity=None, **kwargs):
            key = query if key is None else key
            value = key if value is None else value
            identity = query if identity is None else identity
            if self.batch_first:
                query, key, value = (t.transpose(0, 1) for t in (query, key, value))
            out = self.attn(query=query, key=key, value=value, need_weights=False)[0]
            if self.batch_first:
                out = out.transpose(0, 1)
            return identity + self.dropout_layer(self.proj_drop(out))

    class FFN(BaseModule):
        def __init__(self, embed_dims=256, feedforward_channels=1024, num_fcs=2,
                     act_cfg=None, ffn_drop=0.0, dropout_layer=None, add_identity=True,
                     init_cfg=None):  # fmt: skip
            super().__init__(init_cfg)
            act_cfg = act_cfg or dict(type="ReLU")
            act = {"GELU": nn.GELU, "ReLU": nn.ReLU}[act_cfg["type"]]
            layers, in_channels = [], embed_dims
            for _ in range(num_fcs - 1):
                layers.append(nn.Sequential(nn.Linear(in_channels, feedforward_channels), act(),
                                            nn.Dropout(ffn_drop)))  # fmt: skip
                in_channels = feedforward_channels
            layers += [nn.Linear(feedforward_channels, embed_dims), nn.Dropout(ffn_drop)]
            self.layers = nn.Sequential(*layers)
            self.dropout_layer = build_dropout(dropout_layer)
            self.add_identity = add_identity

        def forward(self, x, identity=None):
            out = self.layers(x)
            if not self.add_identity:
                return self.dropout_layer(out)
            return (x if identity is None else identity) + self.dropout_layer(out)

    def identity_decorator(*args, **kwargs):
        if args and callable(args[0]) and not kwargs:
            return args[0]
        return lambda fn: fn

    from torch.nn.modules.utils import _pair

    mod("mmcv", to_2tuple=_pair)
    mod("mmcv.utils", print_log=lambda *a, **k: None, to_2tuple=_pair, Registry=Registry)
    mod("mmcv.cnn", build_norm_layer=build_norm_layer, build_conv_layer=build_conv_layer,
        MODELS=Registry())  # fmt: skip
    mod("mmcv.cnn.bricks")
    mod("mmcv.cnn.bricks.registry", ATTENTION=Registry())
    mod("mmcv.cnn.bricks.transformer", FFN=FFN, MultiheadAttention=MultiheadAttention)
    mod("mmcv.cnn.utils")
    mod("mmcv.cnn.utils.weight_init", constant_init=None, kaiming_init=None, trunc_normal_=None)
    mod("mmcv.runner", BaseModule=BaseModule, ModuleList=ModuleList, _load_checkpoint=None,
        auto_fp16=identity_decorator, force_fp32=identity_decorator)  # fmt: skip
    mod("mmcv.runner.base_module", BaseModule=BaseModule)
    mod("mmseg", path="mmseg")
    mod("mmseg.utils", get_root_logger=lambda *a, **k: logging.getLogger("maskclip"))
    mod("mmseg.core", build_pixel_sampler=None)
    mod("mmseg.models", path="mmseg/models")
    mod("mmseg.models.builder", BACKBONES=Registry(), HEADS=Registry(),
        build_loss=lambda cfg: nn.Identity())  # fmt: skip
    mod("mmseg.models.losses", accuracy=None)
    mod("mmseg.models.utils", path="mmseg/models/utils")
    embed = importlib.import_module("mmseg.models.utils.embed")  # theirs (PatchEmbed)
    sys.modules["mmseg.models.utils"].PatchEmbed = embed.PatchEmbed
    importlib.import_module("mmseg.ops")  # theirs (resize)
    mod("mmseg.models.backbones", path="mmseg/models/backbones")
    mod("mmseg.models.decode_heads", path="mmseg/models/decode_heads")


def convert_clip_weights(repo, tmpdir, sd):
    """Run MaskCLIP's ``tools/maskclip_utils/convert_clip_weights.py --model ViT16`` on the
    seeded state dict ``sd`` (its ``clip.load`` answered with it); returns the file it writes,
    ``pretrain/ViT16_clip_weights.pth`` (``clip``: the backbone, ``proj``: the head's)."""
    import runpy

    class Loaded:
        def state_dict(self):
            return {k: v.clone() for k, v in sd.items()}

    fake_clip = stub_module("clip", load=lambda name, device="cpu": (Loaded(), None))
    script = os.path.join(os.path.abspath(repo), "tools/maskclip_utils/convert_clip_weights.py")
    cwd, argv = os.getcwd(), sys.argv
    os.makedirs(os.path.join(tmpdir, "pretrain"), exist_ok=True)
    try:
        os.chdir(tmpdir)
        sys.argv = [script, "--model", "ViT16"]
        runpy.run_path(script, run_name="__main__")
    finally:
        os.chdir(cwd)
        sys.argv = argv
        if sys.modules.get("clip") is fake_clip:
            del sys.modules["clip"]
    return os.path.join(tmpdir, "pretrain", "ViT16_clip_weights.pth")


class MaskClipSegmentor(nn.Module):
    """MaskCLIP's ``EncoderDecoder`` in ``test_cfg.mode='whole'`` (its ViT configs' mode):
    ``encode_decode`` = backbone -> ``MaskClipHead`` -> ``resize`` (bilinear,
    ``align_corners=False``) to the input; ``forward_feature`` is that (the other heads'
    segmentors' name for it, so the same helpers run it)."""

    def __init__(self, backbone, head, resize):
        super().__init__()
        self.backbone, self.decode_head, self.resize = backbone, head, resize

    def forward_feature(self, img):
        out = self.decode_head(self.backbone(img))
        return self.resize(input=out, size=img.shape[2:], mode="bilinear", align_corners=False)


def build_maskclip(repo, tmpdir, text, sd=None):
    """MaskCLIP's ViT-B/16 segmentor (``configs/_base_/models/maskclip_vit16.py``) on the seeded
    weights (``sd``; default ``rebuild_weights(WEIGHT_SEED)``) and ``text`` (Q, 512)."""
    install_maskclip_stubs(repo)
    sd = rebuild_weights(WEIGHT_SEED) if sd is None else sd
    vit = importlib.import_module("mmseg.models.backbones.vit")
    mch = importlib.import_module("mmseg.models.decode_heads.maskclip_head")
    ops = importlib.import_module("mmseg.ops")
    weights = convert_clip_weights(repo, tmpdir, sd)
    text_path = os.path.join(tmpdir, "pretrain", "fixture_ViT16_clip_text.pth")
    torch.save(text.clone(), text_path)
    backbone = vit.VisionTransformer(
        img_size=(224, 224), patch_size=16, patch_bias=False, in_channels=3, embed_dims=768,
        num_layers=12, num_heads=12, mlp_ratio=4, out_indices=-1, qkv_bias=True, drop_rate=0.0,
        attn_drop_rate=0.0, drop_path_rate=0.0, with_cls_token=True, output_cls_token=False,
        norm_cfg=dict(type="LN", eps=1e-6), act_cfg=dict(type="GELU"), patch_norm=False,
        pre_norm=True, final_norm=True, return_qkv=True, interpolate_mode="bicubic", num_fcs=2,
        norm_eval=False,
    )  # fmt: skip
    # their init_weights: load_state_dict(checkpoint, False); here strict, to see every key land
    backbone.load_state_dict(torch.load(weights, weights_only=True)["clip"], strict=True)
    load = torch.load
    torch.load = lambda f, map_location=None, **k: load(f, map_location="cpu", **k)  # 'cuda'
    try:
        head = mch.MaskClipHead(
            vit=True, in_channels=768, channels=0, num_classes=text.shape[0],
            text_categories=text.shape[0], text_channels=512, dropout_ratio=0, in_index=-1,
            norm_cfg=dict(type="SyncBN", requires_grad=True), align_corners=False,
            loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
            init_cfg=dict(), text_embeddings_path=text_path, visual_projs_path=weights,
        )  # fmt: skip
    finally:
        torch.load = load
    return MaskClipSegmentor(backbone, head, ops.resize).eval()


def head_maskclip(repo, tmpdir):
    """MaskCLIP's ViT-B/16 (``maskclip_vit16`` configs: whole-image mode, no key smoothing or
    prompt denoising, as its configs ship them)."""
    wpath, sha = save_weights_openai(tmpdir)
    names, idx = write_names(os.path.join(tmpdir, "names.txt"), ", ")
    text = make_text()
    seg = build_maskclip(repo, tmpdir, text)
    cases = {}
    for H, W in [(224, 224), (224, 336), (448, 448)]:
        cases[f"ff_{H}x{W}"] = run_forward_feature(seg, H, W, len(names))
    settings = dict(
        config="configs/_base_/models/maskclip_vit16.py (backbone + MaskClipHead, test mode "
        "whole); weights by tools/maskclip_utils/convert_clip_weights.py --model ViT16",
        activation="GELU (exact; the config's act_cfg, where OpenAI's CLIP trained QuickGELU)",
        layer_norm_eps=1e-6,
        ks_thresh=0.0,
        pd_thresh=0.0,
        text="the fixture text as text_embeddings_path (one query per name)",
        precision="fp32",
        mm_stubs="mmcv 1.x's pure-PyTorch bricks rewritten in install_maskclip_stubs; mmseg's "
        "ops.resize, PatchEmbed, VisionTransformer, BaseDecodeHead and MaskClipHead theirs",
    )
    return dict(
        variants={"maskclip": dict(cases=cases, settings=settings)},
        sha=sha,
        names=names,
        idx=idx,
        text=text,
    )


def make_regions(seed, H, W, block=28, ids=7, zero=True):
    """CorrCLIP's region map (H, W) int32 from integers: ``block``-px cells, each an id in
    [0, ids) (``zero=False``: in [3, 3 + ids), so no pixel is in "no region" and the minimum
    id is 3), plus 1-px seams of id 0 every 61 rows (``zero`` only)."""
    g = torch.Generator().manual_seed(seed)
    low_id, high_id = (0, ids) if zero else (3, 3 + ids)
    low = torch.randint(low_id, high_id, (H // block + 1, W // block + 1), generator=g)
    m = low.repeat_interleave(block, 0).repeat_interleave(block, 1)[:H, :W]
    if zero:
        m[::61] = 0
    return m.to(torch.int32).contiguous()


def _dino_hub_loader(dino_repo, psd):
    """``torch.hub.load('facebookresearch/dino:main', 'dino_vitb8')`` without the download:
    DINO's own vision_transformer.vit_base(patch_size=8) with the seeded weights."""
    spec = importlib.util.spec_from_file_location(
        "dino_vision_transformer", os.path.join(dino_repo, "vision_transformer.py")
    )
    dvit = importlib.util.module_from_spec(spec)
    sys.path.insert(0, os.path.abspath(dino_repo))  # their file: from utils import trunc_normal_
    spec.loader.exec_module(dvit)
    sys.path.remove(os.path.abspath(dino_repo))
    purge_modules("utils")

    def fake_hub_load(repo_or_dir, model, *a, **k):
        assert repo_or_dir.startswith("facebookresearch/dino") and model == "dino_vitb8", (
            repo_or_dir,
            model,
        )
        net = dvit.vit_base(patch_size=8, num_classes=0)  # = hubconf.dino_vitb8, no download
        net.load_state_dict({k2: v.clone() for k2, v in psd.items()}, strict=True)
        return net

    return fake_hub_load


def head_corrclip(repo, tmpdir, dino_repo, precisions=("fp16", "fp32")):
    """CorrCLIP v1 (zdk258/CorrCLIP, CorrCLIPv1/): the seeded CLIP loaded into their vendored
    open_clip's ViT-B-16-quickgelu, the seeded DINO ViT-B/8 through their torch.hub call, region
    maps from make_regions() fed where their code takes masks (forward_feature's ``masks``; for
    ``predict``, <instance_mask_path>/fixture.npz read by their generate_mask with
    mask_generator=None). Needs scikit-learn (their DBSCAN) importable."""
    install_mm_stubs()
    sd = rebuild_weights(WEIGHT_SEED)
    sha = state_dict_sha256(sd)
    psd = rebuild_proxy_weights(PROXY_SEED)
    psha = state_dict_sha256(psd)
    names_path = os.path.join(tmpdir, "names.txt")
    names, idx = write_names(names_path, "; ")
    torch.hub.load = _dino_hub_loader(dino_repo, psd)
    purge_modules("open_clip")
    oc = import_from_repo(repo, "open_clip")
    assert os.path.abspath(oc.__file__).startswith(os.path.abspath(repo)), oc.__file__
    # mask generators other than precomputed masks are not run (mask_generator=None)
    stub_module("transformers", AutoImageProcessor=None, Mask2FormerForUniversalSegmentation=None)
    if importlib.util.find_spec("openpyxl") is None:  # myutils.py: Excel logging only
        stub_module("openpyxl")
    m = import_from_repo(repo, "corrclip_segmentor")
    one_template(m)
    their_transformer = sys.modules["open_clip.transformer"]
    dbscan = their_transformer.DBSCAN

    @contextlib.contextmanager
    def dbscan_eps(eps=None):
        """Their forward's DBSCAN with ``eps`` for its EPS (0.2); as shipped without one."""
        if eps is not None:
            their_transformer.DBSCAN = lambda **kw: dbscan(**{**kw, "eps": eps})
        try:
            yield
        finally:
            their_transformer.DBSCAN = dbscan

    text = make_text()
    variants = {}
    for precision in precisions:
        fp32 = precision == "fp32"
        with half_is_noop(fp32):
            seg = m.CorrCLIPSegmentation(
                clip_type=None,  # random init; the seeded weights are loaded below
                model_type="ViT-B-16-quickgelu",
                dino_type="dino_vitb8",
                name_path=names_path,
                device="cpu",
            )
            if fp32:
                seg.clip.float()
                seg.dino.float()
            missing = seg.clip.load_state_dict({k: v.clone() for k, v in sd.items()}, strict=True)
            assert not missing.missing_keys and not missing.unexpected_keys
            seg.query_features = text.clone() if fp32 else text.clone().half()
            cases = {}
            ff = [
                ("ff_224x224", 224, 224, dict(seed=30)),
                ("ff_224x336", 224, 336, dict(seed=31)),
                ("ff_280x392", 280, 392, dict(seed=32, block=20, ids=12)),
                ("ff_224x336_no_zero", 224, 336, dict(seed=33, zero=False)),
                ("ff_224x224_all_zero", 224, 224, None),
            ]
            if fp32:  # their merging distance (EPS = 0.2 in forward) changed through DBSCAN
                ff += [
                    ("ff_224x224_eps005", 224, 224, dict(seed=30), 0.05),
                    ("ff_224x336_eps002", 224, 336, dict(seed=31), 0.02),
                    ("ff_280x392_eps001", 280, 392, dict(seed=32, block=20, ids=12), 0.01),
                ]
            for name, H, W, rcfg, *eps in ff:
                u8, meta = image_entry(H, W)
                x = normalise(u8)
                if rcfg is None:
                    regions = torch.zeros(H, W, dtype=torch.int32)
                else:
                    regions = make_regions(H=H, W=W, **rcfg)
                with torch.no_grad(), record_interpolate() as calls, dbscan_eps(*eps):
                    out = seg.forward_feature(x, regions[None, None])
                feat, _ = feat_from_calls(calls, len(names))
                cases[name] = dict(
                    kind="forward_feature",
                    image=meta,
                    merge_eps=eps[0] if eps else 0.2,
                    regions=dict(recipe=rcfg, sha256=sha_u8(regions.view(torch.uint8))),
                    feat_logits=feat,
                    img_logits_sub=sub(out[0].float(), 7, 3),
                    sub_step=7,
                    sub_offset=3,
                    img_logits_shape=list(out.shape),
                    out_dtype=str(out.dtype),
                )
            pv = [
                ("predict_slide_default", 336, 448, (360, 480), 0.0, dict(seed=40)),
                ("predict_slide_pad_thd02", 300, 400, (330, 440), 0.2,
                 dict(seed=41, block=24, ids=9)),
            ]  # fmt: skip
            if fp32:
                pv += [("predict_slide_pad_eps001", 300, 400, (330, 440), 0.0,
                        dict(seed=42, block=24, ids=9), 0.01)]  # fmt: skip
            for name, H, W, ori, thd, rcfg, *eps in pv:
                u8, meta = image_entry(H, W)
                x = normalise(u8)
                regions = make_regions(H=ori[0], W=ori[1], **rcfg)
                folder = os.path.join(tmpdir, f"masks_{name}")
                os.makedirs(folder, exist_ok=True)
                np.savez(os.path.join(folder, "fixture.npz"), instance_mask=regions.numpy())
                seg.instance_mask_path = folder
                seg.prob_thd = thd
                s_ = FakeSample(ori, (H, W))
                s_.img_path = s_.metainfo["img_path"]  # mmseg's samples expose it (fixture.png)
                with torch.no_grad(), dbscan_eps(*eps):
                    seg.predict(x, [s_])
                probs = s_.data["seg_logit"].data
                pred = s_.data["pred_sem_seg"].data
                cases[name] = dict(
                    kind="predict",
                    image=meta,
                    regions=dict(recipe=rcfg, sha256=sha_u8(regions.view(torch.uint8))),
                    ori_shape=list(ori),
                    seg_probs_sub=sub(probs.float(), 6, 2),
                    sub_step=6,
                    sub_offset=2,
                    seg_probs_shape=list(probs.shape),
                    out_dtype=str(probs.dtype),
                    pred=pred[0].to(torch.uint8).contiguous(),
                    settings=dict(logit_scale=40, prob_thd=thd, slide_crop=336, slide_stride=112,
                                  pad_multiple=56, mask_pad_value=10000,
                                  merge_eps=eps[0] if eps else 0.2),
                )  # fmt: skip
        variants["corrclip" if not fp32 else "corrclip_fp32"] = dict(
            cases=cases,
            settings=dict(
                clip_type="seeded (create_model(model_type, pretrained=None), then the seeded "
                "state dict loaded strictly)",
                model_type="ViT-B-16-quickgelu",
                dino_type="dino_vitb8",
                mask_generator=None,
                name_split="; ",
                proxy_seed=PROXY_SEED,
                proxy_sha256=psha,
                regions_recipe="make_regions(seed, H, W, block=28, ids=7, zero=True) in "
                "make_head_fixtures.py; all-zero where recipe is None; sha256 over the int32 bytes",
                precision=(
                    'fp16 as shipped (CLIP precision="fp16", dino.half(), imgs .half())'
                    if not fp32
                    else "fp32: same code with .half() made a no-op, clip.float(), dino.float()"
                ),
            ),
        )
    return dict(variants=variants, sha=sha, names=names, idx=idx, text=text)


def head_pamr(repo, tmpdir, check_repo=None):
    m = import_from_repo(repo, "pamr")
    img, logits_low, logits_full = make_pamr_inputs(20)
    pamr = m.PAMR(10, dilations=(8, 16))
    with torch.no_grad():
        out_low = pamr(img, logits_low)
        out_full = pamr(img, logits_full)
    if check_repo:
        purge_modules("pamr")
        sys.path.remove(os.path.abspath(repo))
        m2 = import_from_repo(check_repo, "pamr")
        with torch.no_grad():
            o2 = m2.PAMR(10, dilations=(8, 16))(img, logits_full)
        print(f"pamr: max |{repo} - {check_repo}| = {(o2 - out_full).abs().max():.3g}")
    cases = dict(
        pamr_lowres_mask=dict(
            kind="pamr", gen_seed=20, image=img[0], mask=logits_low[0], out=out_low[0]
        ),
        pamr_fullres_mask=dict(
            kind="pamr", gen_seed=20, image=img[0], mask=logits_full[0], out=out_full[0]
        ),
    )
    settings = dict(
        num_iter=10,
        dilations=[8, 16],
        note="make_pamr_inputs(20): image = randint(-512, 513, (1,3,60,90)) * 2**-8; masks = "
        "randint(-400, 401, ...) * 2**-12 (1,5,30,45) then (1,5,60,90), drawn in that order from "
        "torch.Generator().manual_seed(20); all stored in the cases",
    )
    return dict(
        variants={"pamr": dict(cases=cases, settings=settings)},
        sha=None,
        names=None,
        idx=None,
        text=None,
    )


REPO_NAMES = dict(
    maskclip="chongzhou96/MaskCLIP",
    sclip="wangf3014/SCLIP",
    naclip="sinahmr/NACLIP",
    clearclip="mc-lan/ClearCLIP",
    resclip="yvhangyang/ResCLIP",
    proxyclip="mc-lan/ProxyCLIP",
    pamr="sinahmr/NACLIP (pamr.py)",
    pearl="PGSmall/PEARL",
    corrclip="zdk258/CorrCLIP (CorrCLIPv1/)",
)


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repo")
    ap.add_argument(
        "--head",
        choices=[
            "maskclip",
            "sclip",
            "clearclip",
            "naclip",
            "resclip",
            "proxyclip",
            "pamr",
            "pearl",
            "corrclip",
        ],  # fmt: skip
    )
    ap.add_argument("--out", default="fixtures")
    ap.add_argument("--dino-repo", help="checkout of facebookresearch/dino (ProxyCLIP proxy)")
    ap.add_argument(
        "--precision",
        choices=["both", "fp16", "fp32"],
        default="both",
        help="corrclip only: which of its two fixtures to write",
    )
    ap.add_argument("--check-repo", help="pamr only: a second repo whose pamr.py must agree")
    ap.add_argument(
        "--verify-weights",
        type=int,
        metavar="SEED",
        help="print the SHA-256 of rebuild_weights(SEED)",
    )
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.verify_weights is not None:
        print(
            json.dumps(
                dict(
                    seed=args.verify_weights,
                    clip_sha256=state_dict_sha256(rebuild_weights(args.verify_weights)),
                    proxy_sha256=state_dict_sha256(rebuild_proxy_weights(PROXY_SEED)),
                )
            )
        )
        return
    assert args.repo and args.head, "--repo and --head are required"
    os.makedirs(args.out, exist_ok=True)
    env = env_info()  # imports the installed open_clip before any vendored copy replaces it
    with tempfile.TemporaryDirectory() as tmpdir:
        if args.head == "maskclip":
            r = head_maskclip(args.repo, tmpdir)
        elif args.head == "sclip":
            r = head_sclip(args.repo, tmpdir)
        elif args.head == "naclip":
            r = head_naclip(args.repo, tmpdir)
        elif args.head == "pearl":
            r = head_pearl(args.repo, tmpdir)
        elif args.head == "clearclip":
            r = head_clearclip(args.repo, tmpdir)
        elif args.head == "resclip":
            r = head_resclip(args.repo, tmpdir)
        elif args.head == "proxyclip":
            assert args.dino_repo, "--dino-repo is required for proxyclip"
            r = head_proxyclip(args.repo, tmpdir, args.dino_repo)
        elif args.head == "corrclip":
            assert args.dino_repo, "--dino-repo is required for corrclip"
            precisions = ("fp16", "fp32") if args.precision == "both" else (args.precision,)
            r = head_corrclip(args.repo, tmpdir, args.dino_repo, precisions)
        else:
            r = head_pamr(args.repo, tmpdir, args.check_repo)
    cmd = "python make_head_fixtures.py " + " ".join(sys.argv[1:])
    for vname, v in r["variants"].items():
        fx = dict(
            format=FORMAT,
            head=args.head,
            variant=vname,
            repo=REPO_NAMES[args.head],
            commit=git_commit(args.repo),
            command=cmd,
            env=env,
            settings=v["settings"],
            cases=v["cases"],
        )
        if args.head in ("proxyclip", "corrclip"):
            fx["dino_repo"] = "facebookresearch/dino"
            fx["dino_commit"] = git_commit(args.dino_repo)
        if r["sha"] is not None:
            fx["weights"] = dict(
                recipe=RECIPE,
                seed=WEIGHT_SEED,
                sha256=r["sha"],
                how="rebuild_weights(seed) in make_head_fixtures.py (see its docstring)",
            )
            fx["text"] = dict(
                seed=TEXT_SEED,
                embeddings=r["text"],
                names=r["names"],
                query_idx=r["idx"],
                how="make_text(seed): randint(-1024, 1025, (5, 512)) from Generator(seed), rows divided by sqrt of their integer sum of squares (float64), fp16-rounded; use these stored values",
            )
            fx["images"] = dict(
                how="make_image(seed, H, W) integer recipe; normalise(): (x - mean) / std",
                mean=list(CLIP_MEAN_255),
                std=list(CLIP_STD_255),
            )
        path = os.path.join(args.out, f"{vname}.pt")
        torch.save(fx, path)
        print(f"wrote {path} ({os.path.getsize(path) / 1024:.0f} KiB): {', '.join(v['cases'])}")


if __name__ == "__main__":
    main()
