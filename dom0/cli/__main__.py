"""`python -m dom0.cli`: the `hyperwall` command."""
import sys

from dom0.cli.main import main

sys.exit(main())
