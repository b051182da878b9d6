import sys

from kueue_worker.main import main

sys.exit(main())
