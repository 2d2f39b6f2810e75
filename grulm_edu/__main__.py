import sys

from grulm_edu.cli import main

sys.exit(main())
