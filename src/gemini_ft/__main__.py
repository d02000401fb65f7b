"""`python -m gemini_ft` is the same as the `gemini-ft` console command."""

import sys

from gemini_ft.cli import main

sys.exit(main())
