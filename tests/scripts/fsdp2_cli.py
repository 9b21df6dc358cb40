"""`unlearn` (the CLI) with every training Accelerator switched to FSDP2 (:mod:`fsdp2`).

Usage: accelerate launch ... fsdp2_cli.py run CONFIG [--set ...]
"""

import sys

from fsdp2 import patch_loop

from unlearnkit.cli import main

if __name__ == "__main__":
    patch_loop()
    sys.exit(main(sys.argv[1:]))
