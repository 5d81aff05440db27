"""edorient's main() run in a subprocess with a stand-in image source (tests only; no CLI flag)."""

from pathlib import Path

STANDIN = Path(__file__).resolve().parents[1] / "unit" / "data"  # _standin_source.py
STANDIN_MAIN = (
    "import functools, sys\n"
    "import edorient.data as d\n"
    "d.GenerateConfig = functools.partial(d.GenerateConfig, image_source=sys.argv[1])\n"
    "from edorient.cli.main import main\n"
    "sys.exit(main(sys.argv[2:]))\n"
)
