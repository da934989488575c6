"""Command line for the QuickDraw cache: ``python -m smoe.data download|info``.

    python -m smoe.data download face eye cat snowflake pencil
    python -m smoe.data download --format simplified "alarm clock"
    python -m smoe.data info
"""

from __future__ import annotations

import argparse
import logging
import sys

from smoe.data.categories import PAPER_CATEGORIES
from smoe.data.download import (
    DEFAULT_TIMEOUT_S,
    FORMATS,
    download,
    resolve_base_url,
    resolve_cache_dir,
    resolve_offline,
)
from smoe.data.errors import DataError
from smoe.data.readers import inspect_numpy_bitmap
from smoe.data.sample import sample_counts


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m smoe.data", description="Manage the local Quick, Draw! data.")
    commands = parser.add_subparsers(dest="command", required=True)

    fetch = commands.add_parser(
        "download",
        help="download category files into the cache dir",
        description="Download category files from Google's bucket (or --base-url) into the cache dir. "
        "Files already cached and valid are kept.",
    )
    fetch.add_argument(
        "categories", nargs="*", metavar="CATEGORY",
        help=f"category names in Google's spelling, underscores allowed (default: {' '.join(PAPER_CATEGORIES)})",
    )
    fetch.add_argument("--format", dest="fmt", choices=tuple(FORMATS), default="numpy_bitmap", help="file format (default: numpy_bitmap)")
    fetch.add_argument("--base-url", help="bucket URL laid out like Google's 'full' folder (default: $SMOE_BASE_URL or Google's bucket)")
    fetch.add_argument("--cache-dir", help="cache folder (default: $SMOE_DATA or the user cache dir)")
    fetch.add_argument("--offline", action="store_true", default=None, help="only check the cache, never use the network")
    fetch.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="network timeout in seconds (default: %(default)s)")
    fetch.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    info = commands.add_parser("info", help="show the cache dir, cached files and the bundled sample")
    info.add_argument("--cache-dir", help="cache folder (default: $SMOE_DATA or the user cache dir)")
    return parser


def run_download(args) -> None:
    if args.timeout <= 0:
        raise DataError(f"--timeout must be > 0 seconds, got {args.timeout:g}")
    paths = download(
        args.categories or PAPER_CATEGORIES,
        args.fmt,
        cache_dir=args.cache_dir,
        base_url=args.base_url,
        offline=args.offline,
        progress=not args.no_progress,
        timeout=args.timeout,
    )
    for path in paths:
        print(path)


def run_info(args) -> None:
    cache = resolve_cache_dir(args.cache_dir)
    print(f"cache dir: {cache}")
    print(f"base URL:  {resolve_base_url(None)}")
    print(f"offline:   {resolve_offline(None)}")

    print("cached files:")
    found = False
    for fmt, suffix in FORMATS.items():
        for path in sorted((cache / fmt).glob(f"*{suffix}")):
            found = True
            size_mb = path.stat().st_size / 2**20
            detail = ""
            if fmt == "numpy_bitmap":
                try:
                    detail = f", {inspect_numpy_bitmap(path)} images"
                except DataError as error:
                    detail = f", INVALID: {error}"
            print(f"  {fmt}/{path.name} ({size_mb:.1f} MiB{detail})")
    if not found:
        print("  none")

    print("bundled sample (images per category):")
    for category, count in sample_counts().items():
        print(f"  {category}: {count}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "download":
            run_download(args)
        else:
            run_info(args)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
