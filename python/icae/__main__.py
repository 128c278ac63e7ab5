"""python -m icae ARGS...: the icae command line, run by the installed package."""
import sys

from . import Error, cli


def main() -> int:
    try:
        return cli(*sys.argv[1:])
    except Error as e:
        print(f"icae: error: {e}", file=sys.stderr)
        # The exit code of the CLI for this kind of error (icae::ErrorKind).
        codes = {"Usage": 2, "BadInput": 3, "Io": 4, "Mismatch": 5, "Unsupported": 6}
        return codes.get(type(e).__name__, 1)
    except KeyboardInterrupt as e:
        print(f"icae: {e}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
