"""PASCAL VOC 2012 + SBD -> MMSegmentation's ``SegmentationClassAug`` layout.

    python scripts/prepare_voc_aug.py --devkit data/VOCdevkit --sbd data/benchmark_RELEASE

Inputs: ``<devkit>/VOC2012`` (VOCtrainval_11-May-2012.tar: ``JPEGImages/``,
``SegmentationClass/``, ``ImageSets/Segmentation/{train,val}.txt``) and SBD's
``benchmark_RELEASE`` (``dataset/cls/*.mat``, ``dataset/{train,val}.txt``).

Outputs (as MMSegmentation's ``tools/convert_datasets/voc_aug.py``):
``VOC2012/SegmentationClassAug/<id>.png`` (class indices of every SBD ``.mat``, greyscale),
``ImageSets/Segmentation/trainaug.txt`` (SBD train+val + VOC train - VOC val: 10,582 ids) and
``aug.txt`` (the same minus VOC train: 9,118 ids). Training on ``data.train_split=aug`` reads
train.txt + aug.txt. Existing PNGs are skipped; rerun to resume.
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

import numpy as np
from _prepare import UserError, convert_all, read_ids, require, run, save_label, write_ids
from scipy.io import loadmat

AUG_LEN = 10582  # MMSegmentation's trainaug size with the full downloads
FIX = "download VOCtrainval_11-May-2012.tar and SBD's benchmark.tgz, and pass their folders"


def convert_mat(mat_path: Path, out_dir: Path) -> None:
    """SBD ``GTcls.Segmentation`` of one ``.mat`` -> ``<out_dir>/<id>.png`` (skip if there)."""
    out = out_dir / f"{mat_path.stem}.png"
    if out.exists():
        return
    try:
        data = loadmat(str(mat_path))
        mask = np.asarray(data["GTcls"][0]["Segmentation"][0])
    except (OSError, ValueError, KeyError, IndexError, TypeError) as err:
        raise UserError(
            f"cannot read the SBD annotation {mat_path}: {err}", "re-extract SBD's benchmark.tgz"
        ) from None
    if mask.ndim != 2 or mask.size == 0 or np.any((mask > 20) & (mask != 255)):
        raise UserError(f"{mat_path} holds no VOC class map (values 0..20)", FIX)
    save_label(out, mask.astype(np.uint8))


def _voc_root(devkit: Path) -> Path:
    if (devkit / "VOC2012").is_dir():
        return devkit / "VOC2012"
    if (devkit / "JPEGImages").is_dir():
        return devkit
    raise UserError(f"VOC2012 not found: looked for the folder {devkit / 'VOC2012'}", FIX)


def _sbd_dataset(sbd: Path) -> Path:
    return sbd / "dataset" if (sbd / "dataset").is_dir() else sbd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devkit", type=Path, required=True, help="VOCdevkit (holding VOC2012/)")
    parser.add_argument("--sbd", type=Path, required=True, help="SBD's benchmark_RELEASE folder")
    parser.add_argument(
        "--out", type=Path, default=None, help="default: VOC2012/SegmentationClassAug"
    )
    parser.add_argument("--workers", type=int, default=4, help="processes converting .mat files")
    args = parser.parse_args(argv)

    voc = _voc_root(args.devkit)
    sbd = _sbd_dataset(args.sbd)
    cls_dir = require(sbd / "cls", "SBD class annotations (dataset/cls/*.mat)", FIX)
    out_dir = args.out or voc / "SegmentationClassAug"
    lists = voc / "ImageSets" / "Segmentation"
    voc_train, voc_val = read_ids(lists / "train.txt", FIX), read_ids(lists / "val.txt", FIX)
    sbd_ids = read_ids(sbd / "train.txt", FIX) + read_ids(sbd / "val.txt", FIX)

    mats = sorted(cls_dir.glob("*.mat"))
    if not mats:
        raise UserError(f"no .mat files in {cls_dir}", FIX)
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = [m for m in mats if not (out_dir / f"{m.stem}.png").exists()]
    print(f"{len(mats)} SBD annotations, {len(mats) - len(todo)} already converted")
    convert_all(
        partial(convert_mat, out_dir=out_dir), todo, workers=args.workers, desc="SBD -> PNG"
    )

    have = {p.stem for p in out_dir.glob("*.png")}
    missing = [i for i in dict.fromkeys(sbd_ids) if i not in have]
    if missing:
        raise UserError(f"{len(missing)} SBD ids have no .mat in {cls_dir}, e.g. {missing[0]}", FIX)
    val = set(voc_val)
    trainaug = sorted(set(voc_train + sbd_ids) - val)
    aug = sorted(set(sbd_ids) - set(voc_train) - val)
    for name, ids in (("trainaug.txt", trainaug), ("aug.txt", aug)):
        written = write_ids(lists / name, ids)
        print(f"{lists / name}: {len(ids)} ids{'' if written else ' (unchanged)'}")
    if len(voc_val) == 1449 and len(trainaug) != AUG_LEN:
        print(
            f"warning: expected {AUG_LEN} training ids with the full downloads, got {len(trainaug)}"
        )
    return 0


if __name__ == "__main__":
    run(main)
