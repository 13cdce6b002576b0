import sys

from sweep.report import main

sys.exit(main())
