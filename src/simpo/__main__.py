"""`python -m simpo`: the `simpo` command, so that `accelerate launch -m simpo train RECIPE.yaml` runs it."""

import sys

from .cli import main

sys.exit(main())
