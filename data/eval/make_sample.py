"""How data/eval/alpaca_eval_*.jsonl were made (rerun: python data/eval/make_sample.py).

150 of AlpacaEval's 805 instructions, drawn uniformly with ``random.Random(20261202).sample(range(805), 150)``
and kept in AlpacaEval's order, each with its text-davinci-003 reference (AlpacaEval 1) in one file and
its GPT-4-1106-preview reference (AlpacaEval 2) in the other: 300 rows in all.
"""
import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[2] / "shared" / "data" / "eval"
FILES = {"alpaca_eval_davinci003.jsonl": "alpaca_eval_text_davinci_003.json",
         "alpaca_eval_gpt4.jsonl": "alpaca_eval_gpt4_1106_preview.json"}


def main() -> None:
    idx = sorted(random.Random(20261202).sample(range(805), 150))
    for out, src in FILES.items():
        data = json.loads((SRC / src).read_text())
        rows = [{"instruction": data[i]["instruction"], "input": "", "output": data[i]["output"],
                 "dataset": data[i]["dataset"], "generator": data[i]["generator"], "alpaca_eval_index": i}
                for i in idx]
        (HERE / out).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    (HERE / "alpaca_eval_sample.positions.json").write_text(json.dumps(idx) + "\n")


if __name__ == "__main__":
    main()
