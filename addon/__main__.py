import sys

from addon.cli import main

sys.exit(main())
