import sys

from bridge.cli.app import main

sys.exit(main())
