"""The pure parts of fine-tuning Kronos (the job that runs them is ``candlecast.jobs.finetune``).

- ``data``: candle series, fixed-length windows over them and their tokens (what the training step reads);
- ``train``: the model's own objective (cross-entropy on s1 and s2, teacher forced) and the training loop;
- ``adapter``: LoRA (peft) + event projection on a copy of the base model; adapter folders;
- ``manifest``: ``promoted.json``, the promoted adapters as the model server reads them (no database).

Nothing here reads the store or calls a service. Import from the modules
(``from candlecast.models.finetune.adapter import load_adapter``): this package file stays free of torch.
"""
