"""Synthesis: new verified tasks from finished trajectories, with lineage and a budget.

    engine.py      one parent trajectory -> its accepted tasks (proposal, candidates, filters)
    batch.py       `adp synthesize SOURCE`: one pass over a folder, s3://... or adp.trajectories
    follow.py      `adp synthesize kafka --follow`: the flywheel, a consumer group
    trials.py      --solve K: candidates run K times by the runtimes, kept by pass rate
    the pure parts: grounding.py (observed values, evidence, verify specs), proposals.py
    (prompts, reading replies), candidates.py, dedup.py, lineage.py (ids), accounting.py
    (budget, report), and model.py (the one door to the LLM client)

docs/synthesis.md is the user's guide; schemas/lineage.py the lineage every task carries.
"""
