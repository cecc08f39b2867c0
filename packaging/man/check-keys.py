#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Fail when a config key is not described in meterhub.yaml(5).

    check-keys.py MAN.md README.md [CONFIG.yaml ...]

Collects every key path used in README's "Config reference" YAML block and in
each CONFIG file (the shipped default, the examples) and checks that the man
source describes it as a term (`buses[].meters[].id`). Names a user chooses
(the keys under `profiles` and `tariffs`) are written NAME. The man page is the one
reference; this keeps README and the shipped files from drifting from it.
"""

import re
import sys

import yaml


def paths(node, prefix=''):
    if isinstance(node, dict):
        for key, value in node.items():
            key = str(key)
            here = prefix + '.' + key if prefix else key
            yield here
            if here in ('profiles', 'tariffs') and isinstance(value, dict):
                for named in value.values():
                    yield here + '.NAME'
                    yield from paths(named, here + '.NAME')
            else:
                yield from paths(value, here)
    elif isinstance(node, list):
        for item in node:
            yield from paths(item, prefix + '[]')


def readme_reference(text):
    m = re.search(r'^### Config reference\s*\n+```yaml\n(.*?)^```', text, re.M | re.S)
    if not m:
        sys.exit('README: no "### Config reference" YAML block found')
    return yaml.safe_load(m.group(1))


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    with open(sys.argv[1], encoding='utf-8') as f:
        man = f.read()
    documented = set(re.findall(r'^`([^`]+)`', man, re.M))
    sources = []
    with open(sys.argv[2], encoding='utf-8') as f:
        sources.append(('README.md config reference', readme_reference(f.read())))
    for path in sys.argv[3:]:
        with open(path, encoding='utf-8') as f:
            sources.append((path, yaml.safe_load(f)))
    missing = 0
    for what, doc in sources:
        for key in sorted(set(paths(doc))):
            if key not in documented:
                print('%s: key %s is not described in %s' % (what, key, sys.argv[1]))
                missing += 1
    if missing:
        sys.exit(1)
    print('every key is described (%d terms)' % len(documented))


if __name__ == '__main__':
    main()
