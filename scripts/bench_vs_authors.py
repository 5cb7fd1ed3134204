"""Our teacher heads beside the authors' own segmentors (``make bench-authors``): images/s and
peak memory, as ratios ours / theirs, into the ``vs_authors`` section of docs/benchmarks.json
and docs/BENCHMARKS.md.

For each head and case, three worker processes are started: the authors' segmentor (batch 1,
the only batch their MMSegmentation code takes), ours at batch 1 and ours at ``--batch``
images. Each builds its model on the same seeded weights and images, warms up, then the
parent times them alternately, one forward each in turn, ``--repeats`` rounds (medians; on
one thread with the thread's CPU time, steady on a shared machine; wall time otherwise).
Peak memory: the worker's peak resident set (CPU; in brackets, how far the forwards raised it
above building the model) or peak CUDA memory allocated.

The authors' side is run exactly as scripts/make_head_fixtures.py runs it (fake mm* modules,
stubbed imports, the seeded ViT-B/16 and DINO ViT-B/8 of its weight recipe), by importing that
script's helpers: ``install_mm_stubs``, ``stub_module``, ``purge_modules``, ``import_from_repo``,
``one_template``, ``write_names``, ``save_weights_openai`` (the weight recipe),
``rebuild_proxy_weights``, ``_load_vendored_open_clip``, ``half_is_noop``, ``make_image``,
``normalise``, ``make_text``, ``FakeSample``, ``build_maskclip`` and the constants
``NAME_LINES``, ``PROXY_SEED``. Their checkouts are read from ``--ext`` (default /tmp/ext:
maskclip, sclip, naclip, clearclip, resclip, proxyclip, dino; only those of the heads run are
needed), never from this repository. ClearCLIP and ProxyCLIP cast to fp16 even on a CPU; both
sides run fp32 here (their ``.half()`` made a no-op, as in the fixtures' fp32 variants).
MaskCLIP (chongzhou96/MaskCLIP, mmseg 0.x): its ViT-B/16 backbone and ``MaskClipHead`` from the
checkout on fake mmcv 1.x bricks, exact GELU as its config builds it (ours then with
``quick_gelu=False``, the fixture's setting); its ViT configs test in ``whole`` mode, so it runs
the whole-image cases only.

Cases (``--cases``): ``whole224`` / ``whole448`` (their ``forward_feature`` on one image:
image-size logits; ours ``predict_logits(refine=False)``), ``slide`` (their ``predict`` on a
336 x 448 image with their own crop / stride: windows, resize, softmax, argmax; ours the
project's ``sliding_window_logits``, resize and the same post-processing) and ``slide_pamr``
(NACLIP only: the same with 10 PAMR steps).

    python scripts/bench_vs_authors.py                     # full run (about an hour on 2 cores)
    python scripts/bench_vs_authors.py --issue             # issue 24's table in one run (~40 min)
    python scripts/bench_vs_authors.py --quick             # 2 heads, 224 px, 1 round: a minute
    python scripts/bench_vs_authors.py --threads 1 2 --device cpu --batch 2 4

``--issue`` (``make bench-authors ARGS=--issue``): issue 24's table in one run of about 30-40
minutes on 2 idle cores: every head at 1 and 2 threads; ``whole224`` for all, ours at batch 1
and 4 (the best batch's images/s); ``slide`` for the sliding-window heads and ``slide_pamr``
for NACLIP at batch 1 (the authors' only batch; batched windows cost 4x the time); one warm-up,
three timed rounds (their spread, (max - min) / median, is in the JSON: ``spread``); the
seeded weights made once for all workers; ours in fp32 and in bf16 (``--ours-precision fp32
bf16``). ``--heads`` / ``--cases`` / ``--threads`` / ``--repeats`` / ``--batch`` /
``--slide-batch`` / ``--ours-precision`` given as well override the preset's.

``--ours-precision bf16`` runs our side also with ``teacher.precision=bf16`` (bf16 weights and
matrix products, the label-deciding parts in fp32; the authors' side stays fp32), timed in the
same alternation, one row per precision. That is a precision change, not an fp32 speed-up: each
row also gives the agreement of our batch-1 class labels (the first image's argmax, queries
mapped to their classes) with theirs and, for bf16, with ours in fp32 on the same image.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
KEY = "vs_authors"
HEADS = ["maskclip", "sclip", "clearclip", "naclip", "resclip", "proxyclip"]
#: case -> (kind, H, W)
CASES = {
    "whole224": ("whole", 224, 224),
    "whole448": ("whole", 448, 448),
    "slide": ("slide", 336, 448),
    "slide_pamr": ("slide", 336, 448),
}
#: the authors' own slide crop and stride (their constructors' defaults)
SLIDE = {
    "sclip": (224, 112),
    "naclip": (224, 112),
    "clearclip": (448, 224),
    "resclip": (224, 112),
    "proxyclip": (336, 112),
}
#: ResCLIP's VOC21 config (as in the fixtures)
RESCLIP_CFG = dict(
    temp_thd=0.5,
    delete_same_entity=True,
    attn_rcs_weights=[2.0, 0.3],
    attn_sfr_weights=[2.2, 0.7],
)
SCALE = {
    "maskclip": 100,
    "sclip": 40,
    "naclip": 40,
    "clearclip": 50,
    "resclip": 40,
    "proxyclip": 40,
}
#: the checkouts each head's authors' side reads under ``--ext``
EXT_DIRS = {head: (head, "dino") if head == "proxyclip" else (head,) for head in HEADS}
#: heads whose authors test on the whole image only (MaskCLIP's ViT configs: ``mode='whole'``)
WHOLE_ONLY = ("maskclip",)
#: ``--issue``: issue 24's side-by-side table in one run of about 30-40 minutes on 2 cores
ISSUE_PRESET = dict(heads=HEADS, cases=["whole224", "slide", "slide_pamr"], threads=[1, 2],
                    batch=[4], slide_batch=[], warmup=1, repeats=3,
                    ours_precision=["fp32", "bf16"])  # fmt: skip
#: ``--ours-precision``: our teacher's ``precision`` (the authors' side is always fp32)
PRECISIONS = ("fp32", "bf16")


def _fixtures_module():
    """scripts/make_head_fixtures.py, imported (it imports no project code)."""
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    import make_head_fixtures

    return make_head_fixtures


def missing_checkouts(ext: Path, heads: Sequence[str] = HEADS) -> list[str]:
    """The authors' checkouts of ``heads`` that ``--ext`` lacks (empty when all are there)."""
    needed = dict.fromkeys(d for head in heads for d in EXT_DIRS[head])
    return [d for d in needed if not (ext / d).is_dir()]


def cases_for(head: str, cases: Sequence[str]) -> list[str]:
    """The cases a head runs (PAMR is NACLIP's: ``slide_pamr`` only there; MaskCLIP's authors
    test whole images: no slide cases)."""
    if head in WHOLE_ONLY:
        return [c for c in cases if CASES[c][0] == "whole"]
    return [c for c in cases if c != "slide_pamr" or head == "naclip"]


def _peak_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:  # this process's own peak (Linux keeps ru_maxrss across exec: the parent's would count)
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ---------------------------------------------------------------------- the seeded weights
def seeded_files(folder: str | os.PathLike, proxy: bool) -> tuple[str, str | None]:
    """The seeded ViT-B/16 (``save_weights_openai``'s recipe) and, with ``proxy``, the seeded
    DINO ViT-B/8 state dict, as files in ``folder``: made once (atomically) and reused by
    every worker of a run (each would spend ~20 s of CPU on the recipe)."""
    import torch

    mhf = _fixtures_module()
    folder = Path(folder)
    wpath, ppath = folder / "vit_b16_seeded.pt", folder / "dino_vitb8_seeded.pth"
    if not wpath.is_file():
        tmp = folder / f".vit_b16_seeded.{os.getpid()}.pt"
        torch.save(mhf.rebuild_weights(mhf.WEIGHT_SEED), tmp)
        os.replace(tmp, wpath)
    if proxy and not ppath.is_file():
        tmp = folder / f".dino_vitb8_seeded.{os.getpid()}.pth"
        torch.save(mhf.rebuild_proxy_weights(mhf.PROXY_SEED), tmp)
        os.replace(tmp, ppath)
    return str(wpath), str(ppath) if proxy else None


# ---------------------------------------------------------------------- the authors' side
def build_theirs(
    head: str, case: str, ext: Path, tmp: str, device: str, weights: str | None = None
):
    """The authors' segmentor as scripts/make_head_fixtures.py builds it; a callable on one
    normalised (1, 3, H, W) image (``weights``: a folder of :func:`seeded_files`)."""
    import torch

    mhf = _fixtures_module()
    repo = str(ext / head)
    kind, h, w = CASES[case]
    crop, stride = SLIDE.get(head, (0, 0))
    slide = dict(slide_crop=crop, slide_stride=stride) if kind == "slide" else dict(slide_crop=0)
    mhf.install_mm_stubs()
    wpath, ppath = seeded_files(weights or tmp, proxy=head == "proxyclip")
    names_path = os.path.join(tmp, "names.txt")
    sep = {"clearclip": ",", "proxyclip": "; "}.get(head, ", ")
    mhf.write_names(names_path, sep)
    text = mhf.make_text()

    # ClearCLIP / ProxyCLIP: fp32, as the fixtures' fp32 variants (a fresh context each time)
    def fp32():
        return mhf.half_is_noop(head in ("clearclip", "proxyclip"))

    if head == "maskclip":
        seg = mhf.build_maskclip(repo, tmp, text, sd=torch.load(wpath, weights_only=True))
    elif head == "sclip":
        m = mhf.import_from_repo(repo, "clip_segmentor")
        mhf.one_template(m)
        seg = m.CLIPForSegmentation(clip_path=wpath, name_path=names_path, device=device, **slide)
    elif head == "naclip":
        m = mhf.import_from_repo(repo, "naclip")
        mhf.one_template(m)
        seg = m.NACLIP(clip_path=wpath, name_path=names_path, device=device, arch="reduced",
                       attn_strategy="naclip", gaussian_std=5.0,
                       pamr_steps=10 if case == "slide_pamr" else 0, **slide)  # fmt: skip
    elif head == "clearclip":
        mhf._load_vendored_open_clip(repo, wpath)
        for name in ("BLIP", "BLIP.models"):
            mhf.stub_module(name)
        mhf.stub_module("BLIP.models.blip_retrieval", blip_retrieval=None)
        mhf.stub_module("gem", create_gem_model=None)
        m = mhf.import_from_repo(repo, "clearclip_segmentor")
        mhf.one_template(m)
        with fp32():
            seg = m.ClearCLIPSegmentation(clip_type="CLIP", vit_type="ViT-B/16",
                                          model_type="ClearCLIP", name_path=names_path,
                                          device=device, ignore_residual=True, **slide)  # fmt: skip
        seg.net.float()
    elif head == "resclip":
        if device == "cpu":  # their hard-coded .cuda() / PAMR(...).to('cuda'), as the fixtures
            torch.Tensor.cuda = lambda self, *a, **k: self
            cm = mhf.import_from_repo(repo, "clip.model")

            class CpuPAMR(cm.PAMR):
                def to(self, *a, **k):
                    return self

            cm.PAMR = CpuPAMR
        m = mhf.import_from_repo(repo, "resclip_segmentor")
        mhf.one_template(m)
        seg = m.ResCLIPSegmentation(clip_path=wpath, name_path=names_path, device=device,
                                    arch="wo_resi", attn_strategy="resclip", gaussian_std=5.0,
                                    prob_thd=0.0, **RESCLIP_CFG, **slide)  # fmt: skip
    elif head == "proxyclip":
        seg = _build_theirs_proxyclip(mhf, repo, str(ext / "dino"), wpath, names_path, device,
                                      slide, ppath)  # fmt: skip
    else:
        raise ValueError(f"no authors' segmentor for {head}")
    seg.query_features = text.clone().to(device)
    seg.eval()
    x = mhf.normalise(mhf.make_image(16 if kind == "slide" else 10, h, w)).to(device)

    def forward():
        with fp32(), torch.no_grad():
            if kind == "whole":
                return seg.forward_feature(x)
            sample = mhf.FakeSample((h, w), (h, w))
            seg.predict(x, [sample])
            return sample.data["pred_sem_seg"].data

    return forward, 1


def _build_theirs_proxyclip(mhf, repo, dino_repo, wpath, names_path, device, slide, ppath):
    import importlib.util

    import torch

    psd = torch.load(ppath, weights_only=True)
    spec = importlib.util.spec_from_file_location(
        "dino_vision_transformer", os.path.join(dino_repo, "vision_transformer.py")
    )
    dvit = importlib.util.module_from_spec(spec)
    sys.path.insert(0, os.path.abspath(dino_repo))
    spec.loader.exec_module(dvit)
    sys.path.remove(os.path.abspath(dino_repo))
    mhf.purge_modules("utils")

    def fake_hub_load(repo_or_dir, model, *a, **k):
        net = dvit.vit_base(patch_size=8, num_classes=0)
        net.load_state_dict({k2: v.clone() for k2, v in psd.items()}, strict=True)
        return net

    torch.hub.load = fake_hub_load
    mhf._load_vendored_open_clip(repo, wpath)
    mhf.stub_module("segment_anything", sam_model_registry={})
    for name in ("mae", "mae.models_vit"):
        mhf.stub_module(name)
    mhf.stub_module("mae.pos_embed", interpolate_pos_embed=None)
    sys.modules["mae"].models_vit = sys.modules["mae.models_vit"]
    mhf.stub_module("einops", rearrange=None)
    if importlib.util.find_spec("openpyxl") is None:
        mhf.stub_module("openpyxl")
    m = mhf.import_from_repo(repo, "proxyclip_segmentor")
    mhf.one_template(m)
    with mhf.half_is_noop(True):
        seg = m.ProxyCLIPSegmentation(clip_type="openai", model_type="ViT-B/16", vfm_model="dino",
                                      name_path=names_path, device=device, **slide)  # fmt: skip
    seg.clip.float()
    seg.vfm.float()
    return seg


# ---------------------------------------------------------------------- our side
def build_ours(head: str, case: str, ext: Path, tmp: str, device: str, batch: int,
               weights: str | None = None, precision: str = "fp32"):  # fmt: skip
    """Our teacher (``teacher.precision=precision``) with the same seeded weights, text and
    images; a callable on ``batch`` images (the authors' post-processing for the slide cases:
    resize, softmax, argmax)."""
    import torch

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from src.prediction.windows import sliding_window_logits
    from src.teacher.model import DenseClipTeacher

    mhf = _fixtures_module()
    wpath, proxy_path = seeded_files(weights or tmp, proxy=head == "proxyclip")
    names = [n for line in mhf.NAME_LINES for n in line]
    options = {}
    if head == "resclip":
        options = dict(temp_thd=RESCLIP_CFG["temp_thd"],
                       rcs_weights=RESCLIP_CFG["attn_rcs_weights"],
                       sfr_weights=RESCLIP_CFG["attn_sfr_weights"])  # fmt: skip
    # MaskCLIP's config runs its ViT with exact GELU (the maskclip fixture's setting)
    teacher = DenseClipTeacher(clip_model="ViT-B-16", pretrained=None,
                               quick_gelu=head != "maskclip",
                               class_names=names, templates=["a photo of a {}."], head=head,
                               head_options=options, proxy="dino_vitb8", proxy_weights=proxy_path,
                               refine="pamr" if case == "slide_pamr" else None,
                               precision=precision)  # fmt: skip
    # fp32 weights copied into the parameters in their own dtype (bf16 where open_clip's
    # precision casts them)
    teacher.clip.load_state_dict(torch.load(wpath, weights_only=True))
    text = mhf.make_text()
    teacher.text_embeddings = teacher.name_embeddings = text
    teacher = teacher.to(device).eval()
    kind, h, w = CASES[case]
    one = mhf.normalise(mhf.make_image(16 if kind == "slide" else 10, h, w))
    x = one.repeat(batch, 1, 1, 1).to(device)
    crop, stride = SLIDE.get(head, (0, 0))
    scale = SCALE[head]

    def forward():
        with torch.inference_mode():
            if kind == "whole":
                return teacher.predict_logits(x, refine=False)
            scorer = lambda c: teacher.predict_logits(c, refine=False)  # noqa: E731
            # every image's crops batched, 16 crops per forward
            logits = sliding_window_logits(scorer, x, window=crop, stride=stride, batch_size=16)
            logits = teacher.refine_logits(x, logits)
            return torch.softmax(logits * scale, dim=1).argmax(1)

    return forward, batch


# ---------------------------------------------------------------------- workers and the runner
def _default_packed_weights() -> bool:
    """``DenseClipTeacher``'s default ``packed_weights`` (what :func:`build_ours` runs with)."""
    import inspect

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from src.teacher.model import DenseClipTeacher

    return bool(inspect.signature(DenseClipTeacher).parameters["packed_weights"].default)


def class_labels(out, side: str):
    """The first image's (H, W) class labels from a forward's output: image-size logits (B, Q,
    H, W) of the queries (names) or (B, H, W) labels; queries are mapped to their class (the
    line of ``NAME_LINES`` they are on), as the authors' post-processing does. Our slide
    labels are query indices, theirs class indices."""
    import torch

    mhf = _fixtures_module()
    to_class = torch.tensor([i for i, names in enumerate(mhf.NAME_LINES) for _ in names])
    t = out.detach().cpu()
    if t.dim() == 4:
        return to_class[t[0].float().argmax(0)]
    labels = t.reshape(-1, *t.shape[-2:])[0].long()
    return to_class[labels] if side == "ours" else labels


def label_agreement(a, b) -> float | None:
    """The fraction of pixels where two (H, W) label maps agree (``None``: not comparable)."""
    if a is None or b is None or tuple(a.shape) != tuple(b.shape):
        return None
    return int((a == b).sum()) / a.numel()


def worker(side: str, head: str, case: str, batch: int, args) -> None:
    """Build, warm up, print READY; then one timed forward per ``go`` line on stdin. With
    ``--labels FILE`` the first image's class labels of the last warm-up forward are saved
    there (for the parent's label agreement)."""
    import torch

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    precision = args.ours_precision[0]
    with tempfile.TemporaryDirectory() as tmp:
        if side == "theirs":
            forward, n = build_theirs(head, case, Path(args.ext), tmp, args.device, args.weights)
        else:
            forward, n = build_ours(head, case, Path(args.ext), tmp, args.device, batch,
                                    args.weights, precision=precision)  # fmt: skip
        built = _peak_mb(device)
        cuda = device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        out = None
        for _ in range(args.warmup):
            out = forward()
        if args.labels:
            if out is None:  # no warm-up: one untimed forward for the labels
                out = forward()
            labels = class_labels(out, side).to(torch.int16)
            tmp_labels = f"{args.labels}.{os.getpid()}.tmp"
            torch.save(labels, tmp_labels)
            os.replace(tmp_labels, args.labels)
        del out
        clock = time.thread_time if args.threads == 1 and not cuda else time.perf_counter
        print("READY", flush=True)
        for line in sys.stdin:
            if line.strip() != "go":
                break
            start = clock()
            forward()
            if cuda:
                torch.cuda.synchronize(device)
            print(f"TIME {clock() - start!r}", flush=True)
        peak = _peak_mb(device)
        print("PEAK " + json.dumps({"peak_mb": peak, "extra_mb": peak - built if not cuda else peak,
                                    "images": n}), flush=True)  # fmt: skip


class _Worker:
    def __init__(self, side: str, head: str, case: str, batch: int, args,
                 precision: str = "fp32", labels: str | None = None) -> None:  # fmt: skip
        cmd = [sys.executable, __file__, "--worker", side, head, case, str(batch),
               "--threads", str(args.threads), "--device", args.device, "--ext", str(args.ext),
               "--warmup", str(args.warmup), "--ours-precision", precision]  # fmt: skip
        if getattr(args, "weights", None):
            cmd += ["--weights", str(args.weights)]
        if labels:
            cmd += ["--labels", labels]
        env = os.environ | {"OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1"}
        self.label = f"{head} {case} {side} {precision} x{batch}"
        self.log = tempfile.TemporaryFile(mode="w+")  # a file: a full pipe would block it
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, env=env)  # fmt: skip
        self.times: list[float] = []

    def _expect(self, prefix: str) -> str:
        for line in self.proc.stdout:
            if line.startswith(prefix):
                return line[len(prefix) :].strip()
        self.proc.wait(timeout=60)
        self.log.seek(0)
        err = self.log.read()[-3000:]
        raise RuntimeError(f"{self.label}: worker ended without {prefix.strip()}\n{err}")

    def ready(self) -> None:
        self._expect("READY")

    def once(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        self.times.append(float(self._expect("TIME ")))

    def finish(self) -> dict:
        self.proc.stdin.write("end\n")
        self.proc.stdin.flush()
        peak = json.loads(self._expect("PEAK "))
        self.proc.wait(timeout=60)
        return peak

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=60)
        self.log.close()


def ours_precisions(args) -> list[str]:
    """Our precisions of a run, fp32 first (always there: the bf16 labels are compared with
    it)."""
    wanted = set(getattr(args, "ours_precision", None) or ["fp32"])
    return [p for p in PRECISIONS if p in wanted or p == "fp32"]


def run_point(head: str, case: str, args) -> list[dict[str, Any]]:
    """Theirs, ours at batch 1 and ours at each of ``args.batch``, for each of our precisions,
    timed alternately: one row per precision (the same authors' numbers in each), with the
    label agreement of our batch-1 labels with theirs and (bf16) with ours in fp32."""
    wanted = args.batch
    if CASES[case][0] == "slide" and getattr(args, "slide_batch", None) is not None:
        wanted = args.slide_batch
    batches = sorted({b for b in wanted if b > 1})
    precisions = ours_precisions(args)
    sides = [("theirs", 1, "fp32")]
    sides += [("ours", b, p) for p in precisions for b in [1, *batches]]
    with tempfile.TemporaryDirectory() as folder:
        paths = {(side, p): os.path.join(folder, f"{side}_{p}.pt") for side, b, p in sides
                 if b == 1}  # fmt: skip
        workers = [_Worker(side, head, case, b, args, precision=p,
                           labels=paths[(side, p)] if b == 1 else None)
                   for side, b, p in sides]  # fmt: skip
        try:
            for wk in workers:
                wk.ready()  # one at a time would be fairer for the build, but they only wait
            for _ in range(args.repeats):
                for wk in workers:
                    wk.once()
            peaks = [wk.finish() for wk in workers]
        finally:
            for wk in workers:
                wk.kill()
        import torch

        labels = {k: torch.load(v) if os.path.isfile(v) else None for k, v in paths.items()}
    measured = {}
    for (side, b, p), wk, peak in zip(sides, workers, peaks, strict=True):
        median = statistics.median(wk.times)
        measured[(side, b, p)] = {
            "batch": b, "images_per_s": b / median, "seconds": median,
            "spread": (max(wk.times) - min(wk.times)) / median,
            "peak_mb": peak["peak_mb"], "forward_extra_mb": peak["extra_mb"],
        }  # fmt: skip
    rows = []
    for p in precisions:
        row: dict[str, Any] = {"head": head, "case": case, "size": list(CASES[case][1:]),
                               "threads": args.threads, "device": args.device,
                               "precision": p, "theirs": measured[("theirs", 1, "fp32")]}  # fmt: skip
        for b in [1, *batches]:
            row[f"ours_b{b}"] = measured[("ours", b, p)]
        theirs = row["theirs"]["images_per_s"]
        row["ratio_b1"] = row["ours_b1"]["images_per_s"] / theirs
        for b in batches:
            row[f"ratio_b{b}"] = row[f"ours_b{b}"]["images_per_s"] / theirs
        if batches:  # the batch (1 included) where ours is fastest
            row["best_batch"] = max([1, *batches], key=lambda b: row[f"ours_b{b}"]["images_per_s"])
        ours = labels[("ours", p)]
        row["labels_agree"] = {"theirs": label_agreement(ours, labels[("theirs", "fp32")])}
        if p != "fp32":
            row["labels_agree"]["ours_fp32"] = label_agreement(ours, labels[("ours", "fp32")])
        rows.append(row)
    return rows


def run_all(args) -> list[dict[str, Any]]:
    """Every point of ``args`` (threads x heads x cases), one row each (a failed point is
    recorded with its first error line and the run goes on)."""
    rows = []
    for threads in args.threads:
        for head in args.heads:
            for case in cases_for(head, args.cases):
                point = argparse.Namespace(**{**vars(args), "threads": threads})
                try:
                    point_rows = run_point(head, case, point)
                except RuntimeError as err:  # one point failing keeps the others
                    print(f"{threads} thr {head} {case}: failed\n{err}", file=sys.stderr)
                    rows.append({"head": head, "case": case, "threads": threads,
                                 "error": str(err).splitlines()[0]})  # fmt: skip
                    continue
                rows.extend(point_rows)
                for row in point_rows:
                    best = row.get("best_batch")
                    extra = f", best x{best}: {row[f'ratio_b{best}']:.2f}" if best else ""
                    agree = ", ".join(f"{k} {100 * v:.2f}%" for k, v in row["labels_agree"].items()
                                      if v is not None)  # fmt: skip
                    print(f"{threads} thr {head:9s} {case:10s} {row['precision']} theirs "
                          f"{row['theirs']['images_per_s']:7.2f} img/s  ours/theirs b1 "
                          f"{row['ratio_b1']:.2f}{extra}; labels agree: {agree}", flush=True)  # fmt: skip
    return rows


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, with ``--issue``'s preset for every option not given."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="sclip and naclip, whole224 and slide_pamr, 1 round (development)")  # fmt: skip
    parser.add_argument("--issue", action="store_true",
                        help="issue 24's table in one run: every head, whole224 and slide "
                        "(+PAMR for NACLIP) at batch 1, whole224 also at batch 4, 1 and 2 threads, "
                        "3 rounds, ours in fp32 and bf16 (30-40 min); options given as well override it")  # fmt: skip
    parser.add_argument("--heads", nargs="+", default=HEADS, choices=HEADS)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:n]")
    parser.add_argument("--batch", type=int, nargs="+", default=[4],
                        help="ours at these many images too (the best is reported)")  # fmt: skip
    parser.add_argument("--slide-batch", type=int, nargs="*", default=None,
                        help="the slide cases' batches instead of --batch (none: batch 1 only)")  # fmt: skip
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ours-precision", nargs="+", default=["fp32"], choices=PRECISIONS,
                        help="our teacher.precision (theirs stays fp32): bf16 adds rows beside "
                        "fp32's, with the label agreement of our bf16 labels with our fp32 "
                        "labels and theirs (a precision change, not an fp32 speed-up)")  # fmt: skip
    parser.add_argument("--ext", type=Path, default=Path("/tmp/ext"),
                        help="the authors' checkouts (maskclip sclip naclip clearclip resclip "
                        "proxyclip dino)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.json")
    parser.add_argument("--md", type=Path, default=None, help="default: BENCHMARKS.md beside --out")
    parser.add_argument("--weights", default=None, help=argparse.SUPPRESS)  # seeded_files' folder
    parser.add_argument("--labels", default=None, help=argparse.SUPPRESS)  # a worker's labels file
    parser.add_argument("--worker", nargs=4, metavar=("SIDE", "HEAD", "CASE", "BATCH"),
                        help=argparse.SUPPRESS)  # fmt: skip
    args = parser.parse_args(argv)
    if args.issue:  # the preset, unless an option was given on the command line
        given = {a.split("=")[0] for a in (argv if argv is not None else sys.argv[1:])}
        for key, value in ISSUE_PRESET.items():
            if f"--{key.replace('_', '-')}" not in given:
                setattr(args, key, list(value) if isinstance(value, list) else value)
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    args = parse_args(argv)
    if args.worker:
        side, head, case, batch = args.worker
        args.threads = args.threads[0]
        worker(side, head, case, int(batch), args)
        return None
    missing = missing_checkouts(args.ext, args.heads)
    if missing:
        print(f"bench-authors: the authors' checkouts {missing} are not under {args.ext} "
              "(see scripts/make_head_fixtures.py); nothing measured")  # fmt: skip
        return None
    if args.quick:
        args.heads = [h for h in args.heads if h in ("sclip", "naclip")] or args.heads[:1]
        args.cases, args.threads = ["whole224", "slide_pamr"], args.threads[:1]
        args.batch, args.repeats = [min(min(args.batch), 2)], 1
    load_before = os.getloadavg()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as weights:
        seeded_files(weights, proxy="proxyclip" in args.heads)  # once for every worker
        args.weights = weights
        rows = run_all(args)
    import torch

    section = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch": torch.__version__,
            "device": args.device,
            "cuda": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None,
            "load_average_before": [round(v, 2) for v in load_before],
            "load_average_after": [round(v, 2) for v in os.getloadavg()],
        },  # fmt: skip
        "minutes": round((time.perf_counter() - started) / 60, 1),
        "batches": sorted(set(args.batch)),
        "slide_batches": None if args.slide_batch is None else sorted(set(args.slide_batch)),
        "issue_preset": args.issue,
        "command": "python scripts/bench_vs_authors.py " + " ".join(argv or sys.argv[1:]),
        "quick": args.quick,
        "repeats": args.repeats,
        "ours_precisions": ours_precisions(args),
        # build_ours takes the teacher's default (on a CPU in fp32: oneDNN with packed weights)
        "ours_packed_weights": _default_packed_weights(),
        "rows": rows,
    }
    sys.path.insert(0, str(SCRIPTS))
    from bench import merge_results, write_outputs

    data = merge_results(args.out, {KEY: section})
    data[KEY] = section  # replace, never merge two runs' rows
    write_outputs(data, args.out, args.md or args.out.with_name("BENCHMARKS.md"))
    print(f"wrote the '{KEY}' section of {args.out}")
    return section


if __name__ == "__main__":
    main()
