"""`robot-runtime dataset check PATH`: validate a recorded dataset before training on it or sharing it."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from apps.common import console
from apps.dataset_output import tell_unsafe_ends
from recorders.check import check_dataset


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("dataset", help="inspect recorded datasets")
    commands = parser.add_subparsers(dest="dataset_command", required=True, metavar="COMMAND")
    check = commands.add_parser("check", help="validate structure, indices, timestamps, video frame counts and decodability")
    check.add_argument("path", type=Path, help="dataset directory")
    check.add_argument("--no-decode", action="store_true", help="skip decoding every video frame (much faster)")
    check.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    tell_unsafe_ends(args.path)
    with console.status("checking ...") as status:
        report = check_dataset(args.path, decode=not args.no_decode, progress=status.update)
    table = Table(title=f"dataset {args.path}", show_header=False)
    table.add_row("episodes", str(report.episodes))
    table.add_row("frames", str(report.frames))
    table.add_row(
        "videos decoded", f"{report.videos_decoded} ({report.frames_decoded} frames)" if not args.no_decode else "skipped"
    )
    verdict = "[green]OK[/]" if report.episodes else "[yellow]OK, no episodes yet[/]"
    table.add_row("result", verdict if report.ok else f"[red]{len(report.problems)} problem(s)[/]")
    console.print(table)
    for note in report.notes:
        console.print(f"note: {note}")
    for problem in report.problems:
        console.print(f"[red]problem:[/] {problem}")
    return 0 if report.ok else 1
