"""`python -m rnnfast`: the demo, a character-level language model trained and sampled (see
`rnnfast.demo`; `--help` lists the options). The kernels' self-check is `python -m rnnfast.selfcheck`."""
import sys

from rnnfast.demo import main

if __name__ == "__main__":
    sys.exit(main())
