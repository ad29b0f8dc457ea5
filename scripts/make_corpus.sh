#!/usr/bin/env bash
# Rebuilds the bundled demo corpus (data/corpus/*.txt) from Debian packages; see data/SOURCES.md.
# Needs: apt-get install python3.11-doc libpython3.11-stdlib
set -euo pipefail
cd "$(dirname "$0")/.."
docs=/usr/share/doc/python3.11/html/_sources
lib=/usr/lib/python3.11
out=data/corpus
mkdir -p "$out"
# English prose: the Python tutorial, HOWTOs and FAQ (reStructuredText sources), one paragraph per document.
: > "$out/prose.txt"
for f in $(ls "$docs"/tutorial/*.rst.txt "$docs"/howto/*.rst.txt "$docs"/faq/*.rst.txt | sort); do
  cat "$f" >> "$out/prose.txt"; printf '\n\n' >> "$out/prose.txt"
done
# Source code: a fixed list of standard-library modules, one file per document.
: > "$out/code.txt"
for m in json/decoder.py json/encoder.py textwrap.py string.py heapq.py bisect.py fractions.py statistics.py \
         csv.py shlex.py difflib.py argparse.py dataclasses.py functools.py enum.py pathlib.py calendar.py \
         configparser.py queue.py sched.py graphlib.py colorsys.py pprint.py tokenize.py ast.py; do
  cat "$lib/$m" >> "$out/code.txt"; printf '\n<|endoftext|>\n' >> "$out/code.txt"
done
wc -c "$out"/*.txt
