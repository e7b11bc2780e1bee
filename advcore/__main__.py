import sys

from advcore.cli import main

sys.exit(main())
