"""`python -m publisher.sandbox HOST PORT [--parent PID] [--smtp-port N]`: the stand-ins in a process of their own."""

from __future__ import annotations

import argparse

from publisher.sandbox import run

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("host")
parser.add_argument("port", type=int)
parser.add_argument("--parent", type=int, default=None, help="exit when this process is gone")
parser.add_argument("--smtp-port", type=int, default=None, help="the press relay's SMTP port")
args = parser.parse_args()
run(args.host, args.port, parent=args.parent, log_level="warning", smtp_port=args.smtp_port)
