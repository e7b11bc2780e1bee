import sys

from advcore.cli.main import main

sys.exit(main())
