# Writes q_<name>.txt (one question per line) and gold_<name>.json (gold paragraph titles per
# question) for the 500-question subsets, for `research search --queries` and acceptance_score.py.
# Usage: python3 acceptance_prepare.py SUBSETS_DIR OUT_DIR   (SUBSETS_DIR holds <name>.json)
import json, os, sys
src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
for n in ['hotpotqa', '2wiki', 'musique', 'bamboogle']:
    d = json.load(open(f'{src}/{n}.json'))
    with open(f'{out}/q_{n}.txt', 'w') as f:
        for q in d:
            assert '\n' not in q['Question']
            f.write(q['Question'].strip() + '\n')
    gold = [[c.split('\n', 1)[0].strip() for c in q['golden_context'] if c.split('\n', 1)[0].strip()] for q in d]
    json.dump(gold, open(f'{out}/gold_{n}.json', 'w'))
