#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Fail when an option of `meterhub --help` is not described in meterhub(8).

    check-options.py MAN.md METERHUB [ARGS ...]

Runs METERHUB (a command line: a wrapper may come first) with --help,
collects every long option the usage text names and checks that the man source
writes each of them as `--option`. The usage text is where an option is
added first; this keeps the page from falling behind it.
"""

import re
import subprocess
import sys


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    with open(sys.argv[1], encoding='utf-8') as f:
        man = f.read()
    usage = subprocess.run(sys.argv[2:] + ['--help'], capture_output=True, text=True,
                           check=True).stdout
    options = sorted(set(re.findall(r'(?<![\w-])--[a-z][a-z-]*', usage)))
    if not options:
        sys.exit('no long option found in the usage text')
    missing = [o for o in options if '`%s`' % o not in man]
    for o in missing:
        print('%s is in `meterhub --help` but not in %s' % (o, sys.argv[1]))
    sys.exit(1 if missing else 0)


if __name__ == '__main__':
    main()
