"""Data sets as one uint8 tensor: CIFAR-10 through torchvision, any folder of images, or an image set.

CIFAR-sized data sets fit in memory (50,000 x 3 x 32 x 32 bytes = 154 MB), so the whole set lives
as one (N, 3, H, W) uint8 tensor on the training device, and batches are drawn by indexing it: no
per-step Python loader. Image folders are decoded once at start-up (resized to --image-size).

Held-out split of an image folder: the files are sorted by path, shuffled by a permutation with the
fixed seed 0, and the first `holdout` of that order are held out ('heldout' split); the rest are the
'train' split. The same folder and count always give the same split, on any machine. A folder that
gains or loses images gets another split, so a checkpoint records its own (split_record, with paths
relative to the folder, so that a copy or a move of the folder still matches) and the scripts check
the folder against it (heldout_problem) before they trust its held-out part.
"""
import hashlib
import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")
SPLIT_SEED = 0


def list_images(folder: str) -> list:
    if os.path.isfile(folder):
        raise ValueError(f"--data {folder} is a file: give the folder of images it is in")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"data folder not found: {folder}")
    files = sorted(os.path.join(root, f) for root, _, names in os.walk(folder) for f in names
                   if f.lower().endswith(IMAGE_EXTENSIONS))
    if not files:
        raise ValueError(f"data folder {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return files


def split_files(files: list, split: str, holdout: int) -> list:
    """The 'train', 'heldout' or 'all' part of a sorted file list (see the module docstring)."""
    if split == "all":
        return files
    if holdout < 0:
        raise ValueError(f"--holdout must be >= 0, got {holdout}")
    if holdout >= len(files):
        raise ValueError(f"--holdout {holdout} leaves no training images: the folder holds {len(files)} "
                         f"image(s); pass a smaller --holdout (0 trains on all of them)")
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(SPLIT_SEED)).tolist()
    chosen = order[:holdout] if split == "heldout" else order[holdout:]
    return [files[i] for i in sorted(chosen)]


def load_image(path: str, size: int) -> np.ndarray:
    """One image as (3, size, size) uint8: centre-cropped to a square, resized if needed."""
    try:
        with Image.open(path) as im:
            im = to_rgb8(im, path)
            w, h = im.size
            if w != h:
                s = min(w, h)
                im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
            if im.size != (size, size):
                im = im.resize((size, size), Image.BICUBIC)
            return np.asarray(im).transpose(2, 0, 1)
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise ValueError(f"cannot read image {path}: {e}") from None


def to_rgb8(im: Image.Image, path: str) -> Image.Image:
    """8-bit RGB. PIL's convert('RGB') clips 16-bit greyscale (modes I;16*, I) at 255 instead of
    scaling it, so those are scaled here: v8 = round(v16 / 257), 65535 -> 255."""
    if im.mode.startswith("I"):
        v = np.asarray(im).astype(np.float64)
        if v.min() < 0 or v.max() > 65535:
            raise ValueError(f"cannot read image {path}: integer pixels outside 0..65535")
        return Image.fromarray(np.round(v / 257).astype(np.uint8)).convert("RGB")
    if im.mode == "F":
        raise ValueError(f"cannot read image {path}: floating-point pixels have no fixed range; "
                         f"convert it to 8- or 16-bit")
    return im.convert("RGB")


def load_folder(folder: str, split: str, holdout: int, size: int) -> torch.Tensor:
    files = split_files(list_images(folder), split, holdout)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        images = list(tqdm(pool.map(lambda f: load_image(f, size), files, chunksize=256), total=len(files),
                           desc=f"decoding {split} images", unit="img", leave=False, dynamic_ncols=True))
    return torch.from_numpy(np.stack(images))                                   # (N, 3, H, W) uint8


def cifar10(root: str, split: str):
    """torchvision's CIFAR-10 data set object (train split, or the test split for 'heldout')."""
    import torchvision
    try:
        return torchvision.datasets.CIFAR10(root, train=(split in ("train", "all")), download=True)
    except Exception as e:  # URLError, socket errors, integrity errors: all mean "could not get it"
        raise OSError(f"could not download CIFAR-10 into {root} ({type(e).__name__}); without network, "
                      f"point --data at a folder of images instead, e.g. "
                      f"--data ../shared/data/cifar10-jpeg/train") from None


def image_set(path: str, split: str) -> dict:
    """An image set: an .npz of held-out images, written by tools/ship.py beside a shipped checkpoint, so that
    sample.py and eval.py work on a fresh clone. Arrays: images (N, 3, H, W) uint8, labels (N,), classes, and
    paths (each image's path in the folder it was held out of)."""
    if split == "train":
        raise ValueError(f"{path} holds held-out images only: use --split heldout (or all); train on a folder")
    try:
        with np.load(path) as f:
            return {k: f[k] for k in ("images", "labels", "classes", "paths")}
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"{path} is not an image set written by tools/ship.py ({type(e).__name__})") from None


def load_images(data: str, split: str = "train", holdout: int = 1000, size: int = 32,
                root: str = "./data") -> torch.Tensor:
    """The images of a data set as a (N, 3, size, size) uint8 tensor.

    data='cifar10': torchvision's CIFAR-10 (train split, or the test split for 'heldout'); an .npz: an image
    set (image_set); otherwise a folder of images (any depth), split as described in the module docstring."""
    if data.endswith(".npz"):
        return torch.from_numpy(image_set(data, split)["images"])
    if data == "cifar10":
        return torch.from_numpy(cifar10(root, split).data).permute(0, 3, 1, 2).contiguous()  # (N, 3, 32, 32)
    return load_folder(data, split, holdout, size)


def load_labels(data: str, split: str = "train", holdout: int = 1000, root: str = "./data"):
    """(class index per image (N,) int64, class names), in load_images' order. A folder's classes are
    its first-level sub-folders, sorted (as torchvision's ImageFolder); CIFAR-10's are its own."""
    if data == "cifar10":
        ds = cifar10(root, split)
        return torch.tensor(ds.targets), list(ds.classes)
    if data.endswith(".npz"):
        s = image_set(data, split)
        return torch.from_numpy(s["labels"]).long(), [str(c) for c in s["classes"]]
    every = list_images(data)
    top = [os.path.relpath(f, data).split(os.sep) for f in every]
    if any(len(parts) < 2 for parts in top):
        raise ValueError(f"{data} has images outside class sub-folders: labels need one sub-folder per class")
    classes = sorted({parts[0] for parts in top})
    index = {c: i for i, c in enumerate(classes)}
    files = split_files(every, split, holdout)
    return torch.tensor([index[os.path.relpath(f, data).split(os.sep)[0]] for f in files]), classes


def split_record(folder: str, holdout: int, files=None) -> dict:
    """What identifies a folder's split, stored in a checkpoint: the held-out files' paths relative to
    the folder, and a SHA-256 of the training files' relative paths. files: list_images(folder), if known."""
    files = list_images(folder) if files is None else files
    heldout = [os.path.relpath(f, folder) for f in split_files(files, "heldout", holdout)]
    train = sorted({os.path.relpath(f, folder) for f in files} - set(heldout))
    return {"holdout": holdout, "files": len(files), "heldout": heldout,
            "train_sha256": hashlib.sha256("\n".join(train).encode()).hexdigest()}


def heldout_problem(record: dict, folder: str, holdout: int):
    """None if the held-out split of `folder` at `holdout` holds only images the recorded run was trained
    without (or the folder shares no file with it: another data set); else a sentence saying why not."""
    if folder.endswith(".npz"):  # an image set: its paths must be held-out images of the recorded split
        paths = {str(p) for p in image_set(folder, "heldout")["paths"]}
        return None if paths <= set(record["heldout"]) else (
            f"{folder} holds images this checkpoint was trained on: it is not an image set of its held-out split")
    files = list_images(folder)  # walked once for both questions
    now = split_record(folder, holdout, files)
    trained_without = set(record["heldout"])
    if set(now["heldout"]) <= trained_without:
        return None
    if not trained_without & {os.path.relpath(f, folder) for f in files}:
        return None  # another data set: none of its files are the run's
    return (f"{folder} is not the folder this checkpoint was trained on as it was ({record['files']:,} images "
            f"then, {now['files']:,} now): its held-out split at --holdout {holdout} would hold images the model "
            f"trained on. Evaluate on the folder as it was when the model was trained")


def to_float(x_u8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return x_u8.float() / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255], rounded (the evaluation convention of ../shared/PAPERS.md)."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def batch_indices(step: int, batch_size: int, n: int, seed: int) -> torch.Tensor:
    """Indices of the examples in training batch `step`: the stream of examples walks one random
    permutation of the data set per epoch; epoch e's permutation depends only on (seed, e), so a
    resumed run sees exactly the data order of an uninterrupted one."""
    pos = torch.arange(step * batch_size, (step + 1) * batch_size)
    epoch, within = pos // n, pos % n
    out = torch.empty_like(pos)
    for e in epoch.unique().tolist():
        out[epoch == e] = epoch_permutation(n, seed, e)[within[epoch == e]]
    return out


@functools.lru_cache(maxsize=2)
def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100003 + epoch))
