"""A deterministic document root for load experiments.

What this module knows: file names, sizes and contents derived from a seed, and a manifest that
lets load generators find them. What it must not know: servers or HTTP.

Invariants:
- The same (seed, profile) always yields byte-identical files, so runs on different machines
  serve the same bytes and a tree can be reused: ``ensure()`` regenerates only when the stamp
  file (``.docroot.json``) disagrees or a file has the wrong size.
- Fixed benchmark files live in ``bench/`` (``1k.bin``, ``64k.bin``, ``16m.bin`` ...), so a wrk
  URL never depends on the seed. The random tree lives in ``files/dNN/[sMM/]`` with sizes spread
  log-uniformly from 1 KiB to the profile's maximum.
- ``manifest.json`` at the root lists every file with its size (Locust reads it over HTTP,
  instead of walking the listings); ``index.html`` links every file, so a browser or a crawler
  sees the same tree.
- Only a folder that is new, empty or already a tree (it has the stamp file) is ever written:
  pointed at a folder of the user's own, ``ensure()`` raises ``NotATree`` and touches nothing.

Usage: ``python tools/docroot.py DIR [--seed N] [--profile quick|full]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

KIB = 1024
MIB = 1024 * KIB

FORMAT_VERSION = 2
"""Bumped whenever the layout or contents change, so old trees are regenerated, not reused."""

STAMP_NAME = ".docroot.json"
MANIFEST_NAME = "manifest.json"

BENCH_SIZES: dict[str, int] = {
    "1k": 1 * KIB, "4k": 4 * KIB, "64k": 64 * KIB, "1m": 1 * MIB, "16m": 16 * MIB,
}
"""Named files in bench/: the bench measures 1 KiB, 64 KiB and 16 MiB; 4 KiB and 1 MiB fill gaps."""


@dataclass(frozen=True)
class Profile:
    """How big a tree is: the quick one is for CI and must stay small (it is built in tests)."""

    folders: int
    files_per_folder: int
    max_size: int
    bench_names: tuple[str, ...]


PROFILES = {
    "quick": Profile(folders=3, files_per_folder=4, max_size=256 * KIB,
                     bench_names=("1k", "4k", "64k", "1m")),
    "full": Profile(folders=8, files_per_folder=12, max_size=16 * MIB,
                    bench_names=tuple(BENCH_SIZES)),
}

class NotATree(ValueError):
    """The folder holds files of its own: generating a tree there would overwrite them."""


CHUNK = 1 * MIB
"""Files are written in pieces of this size so a 16 MiB file never sits in memory twice."""


def _file_plan(seed: int, profile: Profile) -> list[tuple[str, int]]:
    """(relative path, size) for every generated file, in a fixed order."""
    rng = random.Random(seed)
    plan = [(f"bench/{name}.bin", BENCH_SIZES[name]) for name in profile.bench_names]
    low, high = math.log(KIB), math.log(profile.max_size)
    for folder in range(profile.folders):
        for number in range(profile.files_per_folder):
            size = int(math.exp(rng.uniform(low, high)))
            nested = f"s{number % 3:02d}/" if number % 2 else ""  # half the files one level deeper
            suffix = rng.choice((".bin", ".txt", ".html", ".css", ".js"))
            plan.append((f"files/d{folder:02d}/{nested}f{number:03d}{suffix}", size))
    return plan


def _content(path: str, size: int, seed: int) -> Iterator[bytes]:
    """Yield the bytes of one file: seeded per path, so files differ but never change."""
    rng = random.Random(f"{seed}:{path}")
    remaining = size
    while remaining > 0:
        piece = min(CHUNK, remaining)
        yield rng.randbytes(piece)
        remaining -= piece


def _index_html(plan: list[tuple[str, int]]) -> bytes:
    rows = "\n".join(f'<li><a href="/{path}">{path}</a> ({size} bytes)</li>' for path, size in plan)
    return (f"<!doctype html>\n<title>evserver experiment tree</title>\n"
            f"<h1>Experiment tree</h1>\n<ul>\n{rows}\n</ul>\n").encode()


def generate(root: str, seed: int = 1, profile_name: str = "quick") -> dict[str, Any]:
    """Write the tree under ``root`` (created if needed) and return the manifest."""
    profile = PROFILES[profile_name]
    plan = _file_plan(seed, profile)
    for path, size in plan:
        full = os.path.join(root, path)
        os.makedirs(os.path.dirname(full), mode=0o755, exist_ok=True)
        with open(full, "wb") as out:
            for piece in _content(path, size, seed):
                out.write(piece)
        os.chmod(full, 0o644)  # nginx's worker may run as another user
    manifest: dict[str, Any] = {
        "version": FORMAT_VERSION, "seed": seed, "profile": profile_name,
        "files": [{"path": "/" + path, "size": size} for path, size in plan],
        "bench": {name: f"/bench/{name}.bin" for name in profile.bench_names},
    }
    index = _index_html(plan)
    manifest["files"].insert(0, {"path": "/index.html", "size": len(index)})
    with open(os.path.join(root, "index.html"), "wb") as out:
        out.write(index)
    manifest_bytes = json.dumps(manifest, indent=1).encode()
    with open(os.path.join(root, MANIFEST_NAME), "wb") as out:
        out.write(manifest_bytes)
    with open(os.path.join(root, STAMP_NAME), "w") as out:
        json.dump({"version": FORMAT_VERSION, "seed": seed, "profile": profile_name}, out)
    os.chmod(root, 0o755)
    return manifest


def load_manifest(root: str) -> dict[str, Any] | None:
    """The manifest of an existing, intact tree, or None when it must be (re)generated."""
    try:
        with open(os.path.join(root, STAMP_NAME)) as stamp_file:
            stamp = json.load(stamp_file)
        with open(os.path.join(root, MANIFEST_NAME)) as manifest_file:
            manifest: dict[str, Any] = json.load(manifest_file)
    except (OSError, ValueError):
        return None
    if stamp.get("version") != FORMAT_VERSION:
        return None
    for entry in manifest["files"]:
        try:
            if os.path.getsize(os.path.join(root, entry["path"].lstrip("/"))) != entry["size"]:
                return None
        except OSError:
            return None
    return manifest


def check_writable_tree(root: str) -> None:
    """Raise ``NotATree`` unless ``root`` is absent, empty, or a tree this module made."""
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return
    except NotADirectoryError:
        raise NotATree(f"{root} is a file, not a folder") from None
    if names and STAMP_NAME not in names:
        raise NotATree(f"{root} holds files of its own ({len(names)} entries) and no "
                       f"{STAMP_NAME}: give a new or empty folder for the generated tree")


def ensure(root: str, seed: int = 1, profile_name: str = "quick") -> dict[str, Any]:
    """Reuse the tree at ``root`` if it matches (seed, profile), else generate it there.

    Raises ``NotATree`` (and writes nothing) when ``root`` is a folder of someone's own files.
    """
    manifest = load_manifest(root)
    if manifest and manifest["seed"] == seed and manifest["profile"] == profile_name:
        return manifest
    check_writable_tree(root)
    return generate(root, seed, profile_name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="folder to create or reuse")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--force", action="store_true", help="regenerate even if it matches")
    args = parser.parse_args(argv)
    try:
        if args.force:
            check_writable_tree(args.root)
            manifest = generate(args.root, args.seed, args.profile)
        else:
            manifest = ensure(args.root, args.seed, args.profile)
    except NotATree as error:
        print(f"docroot: {error}", file=sys.stderr)
        return 2
    total = sum(entry["size"] for entry in manifest["files"])
    print(f"{args.root}: {len(manifest['files'])} files, {total / MIB:.1f} MiB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
