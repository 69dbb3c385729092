"""``python -m dynamics {track,figures} ...``: the two command lines of :mod:`dynamics`.

    python -m dynamics track --run fashion-mnist        # = python -m dynamics.track --run fashion-mnist
    python -m dynamics figures runs/fashion-mnist       # = python -m dynamics.figures runs/fashion-mnist
"""

from __future__ import annotations

import sys

_USAGE = "usage: python -m dynamics {track,figures} [args ...]  (see python -m dynamics.track --help)"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("track", "figures"):
        print(_USAGE, file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    if argv[0] == "track":
        from dynamics.track_cli import main as command
    else:
        from dynamics.figures import main as command
    return command(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
