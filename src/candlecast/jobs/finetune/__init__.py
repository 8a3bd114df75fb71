"""The fine-tune job: monthly LoRA fine-tuning of Kronos per asset class, a promotion gate, and the
publication of promoted adapters to the model server (docs/finetune.md).

- ``windows``: the asset class's candles and event tensors read from the store as of a time, cut into
  windows and split by time;
- ``gate``: validation loss and forecast CRPS on the held-out period, and the promotion decision;
- ``run``: ``run_finetune`` (one class) and ``run_rolling_finetune`` (the scheduler's monthly job);
- ``promotion``: the promoted-adapters manifest written from ``model_adapters``, and telling the inference
  service;
- ``cli``: ``candlecast finetune``.

The pure model parts (LoRA wrapping, adapter folders, the training step, the manifest format) live in
``candlecast.models.finetune``. Import from the modules (``from candlecast.jobs.finetune.run import
run_finetune``): this package file stays free of torch so that the command line starts fast.
"""
