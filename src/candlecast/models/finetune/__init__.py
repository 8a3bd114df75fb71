"""Monthly LoRA fine-tuning of Kronos per asset class, with a promotion gate (docs/finetune.md).

- ``windows``: the asset class's candles and event tensors as of a time -> tokenised windows split by time;
- ``train``: the model's own objective (cross-entropy on s1 and s2, teacher forced) and the training loop;
- ``adapter``: LoRA (peft) + event projection on a copy of the base model; adapter folders;
- ``gate``: validation loss and forecast CRPS on the held-out period, and the promotion decision;
- ``run``: ``run_finetune`` (one class) and ``run_rolling_finetune`` (the scheduler's monthly job);
- ``serving``: the inference service's start-up loading of promoted adapters;
- ``cli``: ``candlecast finetune``.

Import from the modules (``from candlecast.models.finetune.run import run_finetune``): this package file
stays free of torch so that the command line starts fast.
"""
