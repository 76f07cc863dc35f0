# Scores `research search --json` outputs h_<name>.jsonl (HNSW) and e_<name>.jsonl (--exact) in DIR
# against gold_<name>.json: HNSW/exact top-5 agreement and gold-title hits. Usage: python3 acceptance_score.py DIR
import json, sys
d = sys.argv[1]
def title(c):
    t = c.split('\n', 1)[0]
    return t[1:-1] if len(t) >= 2 and t[0] == '"' and t[-1] == '"' else t
print('| dataset | questions | HNSW/exact top-5 agreement | gold title in top-5 (HNSW) | (exact) |')
print('|---|---|---|---|---|')
A = T = 0
for n in ['hotpotqa', '2wiki', 'musique', 'bamboogle']:
    h = [json.loads(l) for l in open(f'{d}/h_{n}.jsonl')]
    e = [json.loads(l) for l in open(f'{d}/e_{n}.jsonl')]
    gold = json.load(open(f'{d}/gold_{n}.json'))
    assert len(h) == len(e) == len(gold)
    agree = sum(len({x['id'] for x in a['hits']} & {x['id'] for x in b['hits']}) for a, b in zip(h, e))
    tot = sum(len(b['hits']) for b in e)
    A += agree; T += tot
    wg = sum(1 for g in gold if g)
    def share(rows):
        if not wg: return 'n/a (no gold paragraphs)'
        k = sum(1 for r, g in zip(rows, gold) if g and any(title(x['contents']) in g for x in r['hits']))
        return f'{100*k/wg:.1f}% ({k}/{wg})'
    print(f'| {n} | {len(h)} | {100*agree/tot:.2f}% ({agree}/{tot}) | {share(h)} | {share(e)} |')
print(f'overall agreement {100*A/T:.2f}% ({A}/{T})')
