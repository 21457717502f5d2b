"""`python -m bot.cli VERB ...`, the same as the `pitcrew` console script."""

import sys

from bot.cli import main

if __name__ == "__main__":  # importing the module (pkgutil.walk_packages) must not run a verb
    sys.exit(main())
