"""``edorient inspect``: counts, parameters, split sizes, label statistics, contact sheet."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edorient.cli._base import Subcommand, positive_int


class Inspect(Subcommand):
    COMMAND = "inspect"
    HELP = "describe a data set (counts, parameters, splits, labels) and draw a contact sheet"

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("dir", type=Path, help="data-set folder written by edorient generate")
        parser.add_argument("--sheet", type=Path, default=None,
                            help="contact-sheet PNG (default DIR/contact_sheet.png)")
        parser.add_argument("--examples", type=positive_int, default=16, help="images on the sheet (default 16)")
        parser.add_argument("--no-sheet", action="store_true", help="skip the contact sheet")
        parser.add_argument("--verify", action="store_true", help="hash every shard against meta.json")
        parser.add_argument("--json", action="store_true", help="print the description as JSON")
        parser.add_argument("--seed", type=int, default=0, help="seed of the examples drawn (default 0)")

    @classmethod
    def func(cls, args: argparse.Namespace) -> int:
        from edorient._utils.outputs import check_output_file
        from edorient.data import contact_sheet, describe_dataset, open_dataset
        from edorient.data._inspect import format_description

        if not args.no_sheet and args.sheet is not None:
            check_output_file(args.sheet, "--sheet")
        data = open_dataset(args.dir, verify="full" if args.verify else "size")
        desc = describe_dataset(data, seed=args.seed)
        if args.verify:
            desc["verified"] = True
        if not args.no_sheet:
            sheet = args.sheet or (args.dir / "contact_sheet.png")
            desc["contact_sheet"] = str(contact_sheet(data, sheet, n=args.examples, seed=args.seed))
        if args.json:
            print(json.dumps(desc, indent=2))
        else:
            print(format_description(desc))
            if args.verify:
                print("verified    every shard and label file matches its SHA-256 in meta.json")
            if "contact_sheet" in desc:
                print(f"contact     {desc['contact_sheet']}")
        return 0
