import sys

from stream_wav2lip.cli import main

sys.exit(main())
