"""`python -m kueue_client ...` is the `kueue` command without installed scripts."""

import sys

from kueue_client.cli import main

sys.exit(main())
