"""``python -m doubledip`` = the ``doubledip`` command."""
import sys

from doubledip.cli import main

sys.exit(main())
