"""`python -m shfan ...` is the `shfan ...` command."""

import sys

from shfan.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
