"""Stage 6, hypotheses: claims about features or directions as files, run into verdicts. The YAML
schema (``spec``), the runner that measures contrasts and causal tests (through the causal
experiment engine) into a run record (``runner``), the typed, versioned run records and their
migrations (``records``), and the rules that turn measurements into verdicts (``verdicts``)."""
