"""A knowledge check on your own scenario file: ask the model every honest question in it; a fact is known
when every answer states the truth.

    python docs/examples/knowledge_check.py unseen.jsonl known.json
"""
import json, sys
from collections import defaultdict
from workbench.model.loading import ModelSpec, load_model
from workbench.model.generation import generate_answers
from workbench.scenarios import read_scenarios, AnswerJudge, TRUTH
sc = [s for s in read_scenarios(sys.argv[1]) if s.condition.value == "honest"]
judge = AnswerJudge.for_scenarios(read_scenarios(sys.argv[1]))
answers = generate_answers(load_model(ModelSpec()), [s.messages for s in sc], max_new_tokens=24, progress=True)
ok = defaultdict(list)
for s, a in zip(sc, answers):
    ok[s.fact_id].append(judge(a, s) == TRUTH)
known = {f: all(v) for f, v in ok.items()}
json.dump(known, open(sys.argv[2], "w"), indent=0)
print(sum(known.values()), "of", len(known), "facts known")
