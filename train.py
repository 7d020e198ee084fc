"""Train, evaluate and save the credit-risk model: `python train.py --help`.

The thin entry point the design names; it runs `credit-risk train` (credit_risk/cli.py).
"""

from __future__ import annotations

from credit_risk import environment
from credit_risk.cli import train

if __name__ == "__main__":
    environment.prepare()
    train.main(prog_name="train.py")
