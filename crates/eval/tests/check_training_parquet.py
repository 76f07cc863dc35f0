"""Independent check of `research data prepare-musique` output with pyarrow (not run by cargo test).

Usage:
    research data prepare-musique --input data/eval/musique --out /tmp/musique-parquet
    python crates/eval/tests/check_training_parquet.py data/eval/musique /tmp/musique-parquet

Reads train.parquet / test.parquet with pyarrow, checks the schema pyarrow infers for ReSearch's rows
(REFERENCE.md §6) and that every row equals the one built here, in Python, from the FlashRAG jsonl
(train -> train.parquet, dev -> test.parquet).

`python check_training_parquet.py data/eval/musique --fixture PATH` instead writes (pyarrow 26, its
defaults: snappy, compliant nested types) the first 5 MuSiQue dev rows plus two hand-written rows (no
answers; unicode) to PATH: the Rust test `pyarrow_written_file_reads` reads that committed file
(crates/eval/tests/fixtures/pyarrow_training_rows.parquet). Needs pyarrow and the `zstd` command.
"""

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def read_jsonl(path: Path):
    if path.suffix == ".zst":
        text = subprocess.run(["zstd", "-dc", str(path)], check=True, capture_output=True).stdout.decode("utf-8")
    else:
        text = path.read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def find(dir_: Path, split: str) -> Path:
    for name in (f"{split}.jsonl", f"{split}.jsonl.zst"):
        if (dir_ / name).exists():
            return dir_ / name
    sys.exit(f"no {split}.jsonl[.zst] in {dir_}")


def expected_rows(items):
    return [
        {
            "data_source": "musique",
            "question": it["question"],
            "ability": "qa",
            "reward_model": {"style": "rule", "ground_truth": list(it["golden_answers"])},
            "extra_info": {"id": it["id"]},
        }
        for it in items
    ]


EXPECTED_SCHEMA = pa.schema(
    [
        ("data_source", pa.string()),
        ("question", pa.string()),
        ("ability", pa.string()),
        ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.list_(pa.string()))])),
        ("extra_info", pa.struct([("id", pa.string())])),
    ]
)


def write_fixture(inp: Path, fixture: Path):
    """The first 5 MuSiQue dev rows and two hand-written ones, written by pyarrow."""
    want = expected_rows(read_jsonl(find(inp, "dev")))
    extra = [
        {"data_source": "musique", "question": "no answers", "ability": "qa",
         "reward_model": {"style": "rule", "ground_truth": []}, "extra_info": {"id": "x_0"}},
        {"data_source": "musique", "question": "Où est 多?", "ability": "qa",
         "reward_model": {"style": "rule", "ground_truth": ["a", "b c"]}, "extra_info": {"id": "x_1"}},
    ]
    pq.write_table(pa.Table.from_pylist(want[:5] + extra, schema=EXPECTED_SCHEMA), fixture)
    print(f"wrote {fixture} with pyarrow {pa.__version__}")


def main():
    inp = Path(sys.argv[1])
    if "--fixture" in sys.argv:
        write_fixture(inp, Path(sys.argv[sys.argv.index("--fixture") + 1]))
        return
    out = Path(sys.argv[2])
    for split, name in (("train", "train"), ("dev", "test")):
        want = expected_rows(read_jsonl(find(inp, split)))
        table = pq.read_table(out / f"{name}.parquet")
        assert table.schema.equals(EXPECTED_SCHEMA), f"{name}: schema\n{table.schema}\n!=\n{EXPECTED_SCHEMA}"
        got = table.to_pylist()
        assert len(got) == len(want), f"{name}: {len(got)} rows, expected {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert g == w, f"{name} row {i + 1}: {g} != {w}"
        jsonl = [json.loads(line) for line in (out / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]
        assert jsonl == want, f"{name}.jsonl differs"
        meta = pq.ParquetFile(out / f"{name}.parquet").metadata
        codec = meta.row_group(0).column(0).compression
        print(f"{name}.parquet: {len(got)} rows OK (schema, every row, jsonl); codec {codec}")
    print("all checks passed")


if __name__ == "__main__":
    main()
