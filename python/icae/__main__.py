"""python -m icae ARGS...: the icae command line, run by the installed package."""
import sys

from . import Error, cli


def main() -> int:
    try:
        return cli(*sys.argv[1:])
    except Error as e:
        # As the executable prints it: "icae[ COMMAND]: error: ..." (usage errors name their owner).
        msg = str(e)
        owner, sep, rest = msg.partition(": ")
        if sep and owner.startswith("icae") and " " not in owner.replace("icae ", "", 1):
            print(f"{owner}: error: {rest}", file=sys.stderr)
        else:
            print(f"icae: error: {msg}", file=sys.stderr)
        # The exit code of the CLI for this kind of error (icae::ErrorKind).
        codes = {"Usage": 2, "BadInput": 3, "Io": 4, "Mismatch": 5, "Unsupported": 6}
        return codes.get(type(e).__name__, 1)
    except KeyboardInterrupt as e:
        print(f"icae: {e}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
