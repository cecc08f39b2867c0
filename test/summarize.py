#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Count individual test cases across the cmocka suites (from meson's
testlog.json) and pytest (from its JUnit XML); print "N passed, N failed"
and exit non-zero when anything failed or nothing ran.

usage: summarize.py TESTLOG.json PYTEST.xml [PYTEST_EXIT_STATUS]

With pytest's exit status: 5 (no tests collected) is reported but fails
nothing by itself; any other non-zero status (interrupted, internal error,
usage error) is reported and counts as a failure when the XML shows none.
"""
import json
import re
import sys
import xml.etree.ElementTree as ET


def cmocka_counts(path):
    passed = failed = 0
    try:
        lines = open(path, encoding='utf-8').read().splitlines()
    except OSError:
        return 0, 1
    for line in lines:
        entry = json.loads(line)
        # cmocka prints its summary on stderr, which meson may keep apart.
        out = (entry.get('stdout') or '') + (entry.get('stderr') or '')
        p = re.search(r'\[  PASSED  \] (\d+) test', out)
        f = re.search(r'\[  FAILED  \] (\d+) test', out)
        if p or f:
            passed += int(p.group(1)) if p else 0
            failed += int(f.group(1)) if f else 0
        if entry.get('result') != 'OK' and not f:
            # Crashed or timed out before cmocka could count: one failure.
            failed += 1
    return passed, failed


def pytest_counts(path):
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return 0, 1
    suites = [root] if root.tag == 'testsuite' else root.findall('testsuite')
    total = sum(int(s.get('tests', 0)) for s in suites)
    bad = sum(int(s.get('failures', 0)) + int(s.get('errors', 0)) for s in suites)
    skipped = sum(int(s.get('skipped', 0)) for s in suites)
    return total - bad - skipped, bad


PYTEST_STATUS = {
    1: 'tests failed',
    2: 'interrupted',
    3: 'internal error',
    4: 'usage error',
    5: 'no tests collected',
}


def main():
    up, uf = cmocka_counts(sys.argv[1])
    ip, if_ = pytest_counts(sys.argv[2])
    rc = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    if rc == 5:
        print('integration: pytest collected no tests')
    elif rc and (rc != 1 or not if_):
        print('integration: pytest exited with status %d (%s)' % (rc, PYTEST_STATUS.get(rc, '?')))
        # A pytest that failed fails the run, even where its XML shows no failure.
        if_ = max(if_, 1)
    passed, failed = up + ip, uf + if_
    print('unit: %d passed, %d failed; integration: %d passed, %d failed' % (up, uf, ip, if_))
    print('%d passed, %d failed' % (passed, failed))
    sys.exit(1 if failed or not passed else 0)


if __name__ == '__main__':
    main()
