"""``python -m dasslib <command>`` (also the ``dasslib`` console script). Commands: ``tag``."""
import argparse
import sys

from .tagging import cli as tag_cli


def main(argv=None):
    parser = argparse.ArgumentParser(prog="dasslib", description="dasslib command line")
    commands = parser.add_subparsers(dest="command", required=True)
    tag_cli.build_parser(commands.add_parser("tag", help="tag recordings with a classifier"))
    args = parser.parse_args(argv)
    return tag_cli.run(args)


if __name__ == "__main__":
    sys.exit(main())
