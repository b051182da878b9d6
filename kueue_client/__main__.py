"""`python -m kueue_client ...` is the `kueue` command without installed scripts."""

from kueue_client.cli import run

run()
