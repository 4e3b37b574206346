import sys

from opscli.cli import main

sys.exit(main())
